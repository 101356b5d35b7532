#include "runtime/trace/preimport_policy.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"

namespace dynahug::runtime {
namespace {

constexpr size_t kMaxComponent = 64;
constexpr size_t kMaxComponents = 8;

bool IsIdentifier(std::string_view s) {
  if (s.empty() || s.size() > kMaxComponent) return false;
  if (!absl::ascii_isalpha(static_cast<unsigned char>(s[0])) && s[0] != '_') {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

bool IsDeniedComponent(std::string_view s) {
  if (s.starts_with("__") && s.ends_with("__")) return true;
  const std::string lower = absl::AsciiStrToLower(std::string(s));
  if (lower.find("test") != std::string::npos ||
      lower.find("bench") != std::string::npos) {
    return true;
  }
  for (std::string_view denied :
       {"conftest", "setup", "examples", "experimental"}) {
    if (lower == denied) return true;
  }
  return false;
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// realpath(3) of `path`, or "" when it does not resolve.
std::string RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return "";
  std::string out(resolved);
  free(resolved);
  return out;
}

bool Inside(const std::string& path, const std::string& dir) {
  return !dir.empty() && path.size() > dir.size() &&
         path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

// An extension module "<dir>/<name>.so" or "<dir>/<name>.<tag>.so" (any
// ABI tag, as importlib's extension suffixes).
std::string FindExtension(const std::string& dir, std::string_view name) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return "";
  std::string found;
  const std::string prefix = std::string(name) + ".";
  while (dirent* entry = readdir(d)) {
    std::string_view file(entry->d_name);
    if (!file.starts_with(prefix) || !file.ends_with(".so")) continue;
    // "<name>.so" has one dot, "<name>.<tag>.so" two (name has none).
    const size_t dots =
        static_cast<size_t>(std::count(file.begin(), file.end(), '.'));
    if (dots > 2) continue;
    if (IsRegularFile(dir + "/" + std::string(file))) {
      found = dir + "/" + std::string(file);
      break;
    }
  }
  closedir(d);
  return found;
}

// The dotted components of `module` ("a..b" has an empty one).
std::vector<std::string_view> Components(std::string_view module) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    const size_t dot = module.find('.', start);
    parts.push_back(module.substr(start, dot == std::string_view::npos
                                             ? std::string_view::npos
                                             : dot - start));
    if (dot == std::string_view::npos) return parts;
    start = dot + 1;
  }
}

}  // namespace

bool IsVettedModuleName(std::string_view module) {
  const std::vector<std::string_view> parts = Components(module);
  if (parts.empty() || parts.size() > kMaxComponents) return false;
  for (std::string_view part : parts) {
    if (!IsIdentifier(part) || IsDeniedComponent(part)) return false;
  }
  return true;
}

bool ModuleExistsUnder(const std::string& package_dir,
                       std::string_view module) {
  if (!IsVettedModuleName(module)) return false;
  const std::string root = RealPath(package_dir);
  if (root.empty() || !IsDirectory(root)) return false;
  const std::vector<std::string_view> parts = Components(module);
  if (parts.size() < 2) return false;
  std::string dir = root;
  for (size_t i = 1; i + 1 < parts.size(); ++i) {
    dir += "/" + std::string(parts[i]);
    if (!IsRegularFile(dir + "/__init__.py")) return false;
  }
  const std::string_view leaf = parts.back();
  std::string found;
  if (IsRegularFile(dir + "/" + std::string(leaf) + ".py")) {
    found = dir + "/" + std::string(leaf) + ".py";
  } else if (IsRegularFile(dir + "/" + std::string(leaf) + "/__init__.py")) {
    found = dir + "/" + std::string(leaf) + "/__init__.py";
  } else {
    found = FindExtension(dir, leaf);
  }
  if (found.empty()) return false;
  return Inside(RealPath(found), root);
}

namespace {

void CollectModules(const Member& m, std::vector<std::string>& out,
                    std::set<std::string>& seen) {
  for (const hooks::PickleStream& stream : m.pickles) {
    for (const hooks::GlobalReference& g : stream.globals) {
      if (seen.insert(g.module).second) out.push_back(g.module);
    }
  }
  for (const Member& child : m.children) CollectModules(child, out, seen);
}

}  // namespace

std::vector<std::string> SubmodulesToPreimport(
    const AnalyzedFile& file,
    const std::map<std::string, std::string>& package_dirs) {
  std::vector<std::string> named;
  std::set<std::string> seen;
  CollectModules(file.root(), named, seen);
  std::vector<std::string> out;
  std::set<std::string> chosen;
  for (const std::string& module : named) {
    if (!IsVettedModuleName(module)) continue;
    const std::string top = module.substr(0, module.find('.'));
    auto dir = package_dirs.find(top);
    if (dir == package_dirs.end()) continue;
    // Parents first: importing a.b.c imports a.b anyway.
    size_t dot = module.find('.');
    while (dot != std::string::npos) {
      size_t next = module.find('.', dot + 1);
      const std::string prefix =
          next == std::string::npos ? module : module.substr(0, next);
      if (!chosen.count(prefix)) {
        if (out.size() >= kMaxPreimportPerFile) return out;
        if (!ModuleExistsUnder(dir->second, prefix)) break;
        chosen.insert(prefix);
        out.push_back(prefix);
      }
      dot = next;
    }
  }
  return out;
}

}  // namespace dynahug::runtime
