// Which submodules of allowlisted packages the zygote imports ahead of a
// file's fork, so that every child does not import them again under every
// hook (an sklearn pickle's child imported ~100-170 sklearn/scipy modules:
// 100-450 ms per file).
//
// The policy (a module name read from a file is a hint checked against the
// installed packages, never an instruction):
//  1. Candidates are the modules of the file's static globals (GLOBAL and
//     STACK_GLOBAL, from the static decoder: nothing is unpickled) and each
//     parent package of them, in the order first named.
//  2. The top-level package is on the zygote's allowlist and already
//     imported; `package_dirs` maps it to its directory.
//  3. Every dotted component is an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*)
//     of at most 64 characters, at most 8 components; no component is a
//     dunder (__main__, __init__, ...), contains "test" or "bench" (any
//     case: tests, testing, _testutils, benchmarks, ...), or is one of
//     conftest, setup, examples, experimental (sklearn's enable_* switches
//     change other modules when imported).
//  4. The module exists on disk under the package directory: a/b is
//     <dir>/a/b.py, <dir>/a/b/__init__.py or an extension <dir>/a/b.*.so,
//     each intermediate directory has an __init__.py, and the real path
//     (symlinks resolved) stays inside the package's real directory.
//  5. At most kMaxPreimportPerFile modules per file and
//     kMaxPreimportPerZygote per zygote (TraceRunner counts).
// Anything else is not imported in the zygote (the child, sandboxed,
// imports what the load needs, as before).
//
// Pure but for reading the file system (stat, realpath); thread-safe.
#ifndef DYNAHUG_RUNTIME_TRACE_PREIMPORT_POLICY_H_
#define DYNAHUG_RUNTIME_TRACE_PREIMPORT_POLICY_H_

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/container/container.h"

namespace dynahug::runtime {

inline constexpr size_t kMaxPreimportPerFile = 64;
// At most this many submodules per zygote (TraceRunner), so that a stream
// of crafted files cannot make it import every module of the allowlisted
// packages (time and memory that every later fork pays).
inline constexpr size_t kMaxPreimportPerZygote = 1024;

// Rule 3 for a whole dotted name (the top-level component included).
bool IsVettedModuleName(std::string_view module);

// Rule 4: whether `module` ("pkg.a.b") is a module file under
// `package_dir`, the directory of its top-level package "pkg".
bool ModuleExistsUnder(const std::string& package_dir, std::string_view module);

// Rules 1-5 for `file`: module names to import, parents before children,
// top-level packages excluded (TraceRunner::Warm imports those).
std::vector<std::string> SubmodulesToPreimport(
    const AnalyzedFile& file,
    const std::map<std::string, std::string>& package_dirs);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_TRACE_PREIMPORT_POLICY_H_
