// Shared helpers for the embedded-interpreter tests (runtime/ and hooks/):
// one interpreter per test process, benign fixtures generated once per build
// tree by tests/runtime/embed_fixtures.py with Debian's Python, and a way to
// run a command and capture its output.
#ifndef DYNAHUG_TESTS_RUNTIME_EMBED_TEST_UTIL_H_
#define DYNAHUG_TESTS_RUNTIME_EMBED_TEST_UTIL_H_

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/embed/interpreter.h"

namespace dynahug::testing {

// The process's interpreter, created on first use; aborts the test binary
// when it cannot be created (every test here needs it).
inline runtime::Interpreter& SharedInterpreter() {
  static runtime::Interpreter* interp = [] {
    absl::StatusOr<runtime::Interpreter> created =
        runtime::Interpreter::Create();
    if (!created.ok()) {
      fprintf(stderr, "Interpreter::Create: %s\n",
              created.status().ToString().c_str());
      abort();
    }
    return new runtime::Interpreter(std::move(*created));
  }();
  return *interp;
}

// Initialises CPython directly, as a host that never installed the audit
// hook would: isolated configuration (the environment is ignored), Debian's
// standard library, no site import and no AuditHook::Install. Only for a
// fresh process (a threadsafe-style death test) that must run with the hook
// absent. Returns false when initialisation failed.
inline bool InitializePythonWithoutAuditHook() {
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.site_import = 0;
  config.install_signal_handlers = 0;
  PyStatus status = PyConfig_SetString(&config, &config.home, L"/usr");
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  return !PyStatus_Exception(status) && Py_IsInitialized();
}

// Runs `command` through /bin/sh; returns its exit status and stdout.
inline int RunCommand(const std::string& command, std::string* out) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
    if (out != nullptr) out->append(buf, n);
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Directory of the generated benign fixtures (generated on first use; a
// lock file serialises concurrent test processes).
inline const std::string& FixtureDir() {
  static const std::string dir = [] {
    std::string d = std::string(DYNAHUG_TEST_DATA_DIR) + "/embed_fixtures";
    std::string lock_path =
        std::string(DYNAHUG_TEST_DATA_DIR) + "/embed_fixtures.lock";
    int lock = open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (lock >= 0) flock(lock, LOCK_EX);
    // Regenerated when missing or older than the generator script.
    struct stat st, script;
    std::string script_path =
        std::string(DYNAHUG_SOURCE_DIR) + "/tests/runtime/embed_fixtures.py";
    if (stat((d + "/reference.tsv").c_str(), &st) != 0 ||
        (stat(script_path.c_str(), &script) == 0 &&
         script.st_mtime > st.st_mtime)) {
      std::string tmp = d + ".tmp";
      std::string out;
      int rc = RunCommand("rm -rf '" + tmp + "' && " DYNAHUG_PYTHON " '" +
                              std::string(DYNAHUG_SOURCE_DIR) +
                              "/tests/runtime/embed_fixtures.py' '" + tmp +
                              "' && rm -rf '" + d + "' && mv '" + tmp + "' '" +
                              d + "'",
                          &out);
      if (rc != 0) {
        fprintf(stderr, "fixture generation failed (%d): %s\n", rc,
                out.c_str());
        abort();
      }
    }
    if (lock >= 0) close(lock);
    return d;
  }();
  return dir;
}

inline std::string Fixture(const std::string& name) {
  return FixtureDir() + "/" + name;
}

inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

}  // namespace dynahug::testing

#endif  // DYNAHUG_TESTS_RUNTIME_EMBED_TEST_UTIL_H_
