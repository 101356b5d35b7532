#include "runtime/scanner/default_model.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

namespace dynahug::runtime {

std::string DefaultModelPath() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("DYNAHUG_MODEL"); env && *env) {
    return env;  // explicit: never fall back to another bundle
  }
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string dir(exe, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    candidates.push_back(dir + "/default.dhm");
    candidates.push_back(dir + "/../share/dynahug/default.dhm");
  }
#ifdef DYNAHUG_SOURCE_MODEL
  candidates.push_back(DYNAHUG_SOURCE_MODEL);
#endif
  for (const std::string& c : candidates) {
    if (access(c.c_str(), R_OK) == 0) return c;
  }
  return candidates.empty() ? std::string("default.dhm") : candidates.front();
}

}  // namespace dynahug::runtime
