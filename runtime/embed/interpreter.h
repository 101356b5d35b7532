// The embedded CPython 3.11 interpreter: one per process, owned by a
// move-only guard.
//
// Create() installs the dynahug audit hook (before initialisation, as PEP 578
// requires for hooks that must see everything), initialises Debian's
// libpython3.11 from an isolated PyConfig (no environment variables, no user
// site, no site.main(), explicit program name and home, sys.path exactly
// InterpreterOptions::module_search_paths), then verifies that the hook is
// active. Python errors never leak out of this unit: they become statuses.
//
// Disguise (InterpreterOptions::disguise): code in the interpreter should
// not be able to tell it from an ordinary `python3` process by the cheap
// checks. After initialisation Create() imports `site` (without running
// site.main(), so sys.path and .pth files are untouched and no user site is
// added), installs the builtins site.main() would (help, exit, quit,
// copyright, credits, license), and replaces sys.flags by a copy whose
// isolated, ignore_environment, no_user_site, no_site and safe_path read 0
// as in a plain `python3`. The isolation itself is unchanged: the
// interpreter was configured isolated, and sys.flags is informational after
// start-up (site.py, the only stdlib reader that would act on it at import
// time, is imported before the replacement). sys.argv is [argv0].
//
// Threading and GIL: the thread that calls Create() holds the GIL for the
// guard's whole life and must be the only thread that uses it.
//
// Fork: the zygote creates the interpreter and Preimport()s the libraries
// once, then forks one child per file. Call BeforeFork() in the parent right
// before fork(), AfterForkParent() in the parent and AfterForkChild() in the
// child right after it. The child runs one load and leaves with _exit()
// (never by destroying the guard).
#ifndef DYNAHUG_RUNTIME_EMBED_INTERPRETER_H_
#define DYNAHUG_RUNTIME_EMBED_INTERPRETER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dynahug::runtime {

struct InterpreterOptions {
  // sys.executable and the program name used for path configuration.
  std::string program_name = "/usr/bin/python3.11";
  // PYTHONHOME equivalent: sys.prefix and sys.exec_prefix.
  std::string home = "/usr";
  // sys.path, exactly, in order.
  std::vector<std::string> module_search_paths = {
      "/usr/lib/python3.11", "/usr/lib/python3.11/lib-dynload",
      "/usr/lib/python3/dist-packages"};
  // sys.argv[0]. "" is what `python3 < script.py` shows; it names no file
  // a payload could look for.
  std::string argv0 = "";
  // sys.orig_argv (empty: none).
  std::vector<std::string> orig_argv = {"python3"};
  // See the file comment.
  bool disguise = true;
  // When true the guard's destructor runs Py_FinalizeEx. Children must not
  // finalize (they _exit); a zygote may skip it to exit faster.
  bool finalize_on_destroy = true;
};

class Interpreter {
 public:
  // Initialises the process's interpreter. Errors: FailedPrecondition when
  // an interpreter was already initialised in this process (CPython with
  // extension modules cannot be re-initialised), Internal/InvalidArgument
  // when initialisation or the audit-hook check fails.
  static absl::StatusOr<Interpreter> Create(
      const InterpreterOptions& options = {});

  Interpreter(Interpreter&& other) noexcept;
  Interpreter& operator=(Interpreter&& other) noexcept;
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;
  ~Interpreter();

  // Imports `modules` in order (the zygote warms torch, numpy, joblib,
  // sklearn, pickle, ... once). Stops at the first failure, naming it.
  absl::Status Preimport(const std::vector<std::string>& modules);

  // The directory of the already imported package `name` (the first entry
  // of sys.modules[name].__path__), with nothing imported or run. Errors:
  // NotFound when `name` is not imported or is not a package.
  absl::StatusOr<std::string> PackageDirectory(const std::string& name);

  // Runs `source` (statements) in a fresh namespace whose globals are a copy
  // of __main__'s. For diagnostics and tests.
  absl::Status Exec(const std::string& source);
  // Evaluates the expression `expr` in __main__'s namespace and returns
  // str() of the result.
  absl::StatusOr<std::string> Eval(const std::string& expr);

  // Fork protocol (see file comment). Thin wrappers over PyOS_BeforeFork,
  // PyOS_AfterFork_Parent and PyOS_AfterFork_Child.
  static void BeforeFork();
  static void AfterForkParent();
  static void AfterForkChild();

  // Milliseconds Create() spent in Py_InitializeFromConfig.
  double init_ms() const { return init_ms_; }
  bool active() const { return active_; }

 private:
  Interpreter(bool finalize, double init_ms)
      : active_(true), finalize_(finalize), init_ms_(init_ms) {}
  bool active_ = false;
  bool finalize_ = false;
  double init_ms_ = 0;
};

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_EMBED_INTERPRETER_H_
