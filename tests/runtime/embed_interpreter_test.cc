// Interpreter guard: isolation, audit hook installed and verified, error
// conversion, single-initialisation, and a single-threaded zygote.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "gtest/gtest.h"
#include "hooks/audit_hook.h"
#include "hooks/base/py_ref.h"
#include "runtime/embed/interpreter.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::runtime {
namespace {

using dynahug::testing::SharedInterpreter;
using hooks::StatusFromPyErr;

// Hostile environment set before main(): an isolated interpreter must
// ignore all of it (PYTHONHOME pointing nowhere would even break start-up).
const bool kEnvironmentPoisoned = [] {
  setenv("PYTHONPATH", "/tmp/dynahug_evil_path", 1);
  setenv("PYTHONHOME", "/nonexistent/dynahug", 1);
  setenv("PYTHONSTARTUP", "/tmp/dynahug_evil_startup.py", 1);
  setenv("PYTHONUSERBASE", "/tmp/dynahug_evil_userbase", 1);
  setenv("PYTHONINSPECT", "1", 1);
  setenv("PYTHONVERBOSE", "1", 1);
  return true;
}();

std::string Eval(const std::string& expr) {
  absl::StatusOr<std::string> r = SharedInterpreter().Eval(expr);
  EXPECT_TRUE(r.ok()) << expr << ": " << r.status();
  return r.ok() ? *r : "";
}

TEST(EmbedInterpreterTest, SysPathIsExactlyTheConfiguredList) {
  ASSERT_TRUE(kEnvironmentPoisoned);
  EXPECT_EQ(Eval("repr(__import__('sys').path)"),
            "['/usr/lib/python3.11', '/usr/lib/python3.11/lib-dynload', "
            "'/usr/lib/python3/dist-packages']");
}

TEST(EmbedInterpreterTest, EnvironmentAndUserSiteIgnored) {
  struct Case {
    const char* expr;
    const char* want;
  } cases[] = {
      // sys.flags is disguised (see interpreter.h); the real configuration
      // is checked below.
      {"__import__('sys').flags.isolated", "0"},
      {"__import__('sys').flags.ignore_environment", "0"},
      {"__import__('sys').flags.no_user_site", "0"},
      {"__import__('sys').flags.inspect", "0"},
      {"__import__('sys').flags.verbose", "0"},
      {"__import__('sys').flags.dont_write_bytecode", "1"},
      {"'site' in __import__('sys').modules", "True"},
      {"__import__('site').ENABLE_USER_SITE", "None"},  // site.main() not run
      {"__import__('sys').prefix", "/usr"},
      {"__import__('sys').executable", "/usr/bin/python3.11"},
      {"__import__('sys').version_info[:2]", "(3, 11)"},
      {"any('dynahug_evil' in p for p in __import__('sys').path)", "False"},
  };
  for (const Case& c : cases) EXPECT_EQ(Eval(c.expr), c.want) << c.expr;
  const PyConfig* config =
      _PyInterpreterState_GetConfig(PyInterpreterState_Get());
  EXPECT_EQ(config->isolated, 1);
  EXPECT_EQ(config->use_environment, 0);
  EXPECT_EQ(config->user_site_directory, 0);
  EXPECT_EQ(config->site_import, 0);
}

TEST(EmbedInterpreterTest, AuditHookInstalledBeforeInitAndActive) {
  SharedInterpreter();
  hooks::AuditHook& hook = hooks::AuditHook::Instance();
  EXPECT_TRUE(hook.installed());
  // Interpreter start-up itself raised events the hook saw (imports, open).
  EXPECT_GT(hook.events_seen(), 0u);
  uint64_t before = hook.events_seen();
  EXPECT_TRUE(hook.VerifyActive().ok());
  ASSERT_TRUE(
      SharedInterpreter().Exec("import sys\nsys.audit('dynahug.t', 1)").ok());
  EXPECT_GT(hook.events_seen(), before);
  // Once installed, a second Install() is an idempotent success.
  EXPECT_TRUE(hook.Install().ok());
}

TEST(EmbedInterpreterDeathTest, CreateAfterForeignInitIsRefusedAndHookAbsent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Fresh process (threadsafe style re-executes the binary): something else
  // initialised Python without the hook. Create() must refuse rather than
  // hand out an interpreter whose start-up nobody audited, and must not
  // leave the hook claiming to be installed.
  EXPECT_EXIT(
      {
        if (!dynahug::testing::InitializePythonWithoutAuditHook()) {
          std::_Exit(2);
        }
        absl::StatusOr<Interpreter> r = Interpreter::Create();
        fprintf(stderr, "Create: %s\n", r.status().ToString().c_str());
        if (r.ok()) std::_Exit(3);
        if (r.status().code() != absl::StatusCode::kFailedPrecondition) {
          std::_Exit(4);
        }
        hooks::AuditHook& hook = hooks::AuditHook::Instance();
        if (hook.installed()) std::_Exit(5);
        absl::Status install = hook.Install();
        fprintf(stderr, "Install: %s\n", install.ToString().c_str());
        if (install.code() != absl::StatusCode::kFailedPrecondition) {
          std::_Exit(6);
        }
        if (hook.VerifyActive().ok()) std::_Exit(7);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0),
      "Create: FAILED_PRECONDITION: Interpreter::Create: an interpreter was "
      "already initialised.*Install: FAILED_PRECONDITION");
}

TEST(EmbedInterpreterTest, SecondCreateFails) {
  SharedInterpreter();
  absl::StatusOr<Interpreter> again = Interpreter::Create();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EmbedInterpreterTest, EmptySearchPathIsInvalidArgument) {
  InterpreterOptions options;
  options.module_search_paths.clear();
  EXPECT_EQ(Interpreter::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EmbedInterpreterTest, PythonErrorsBecomeStatusesAndAreCleared) {
  Interpreter& py = SharedInterpreter();
  struct Case {
    absl::Status status;
    absl::StatusCode code;
    const char* needle;
  } cases[] = {
      {py.Preimport({"json", "dynahug_no_such_module"}),
       absl::StatusCode::kNotFound, "dynahug_no_such_module"},
      {py.Exec("raise ValueError('boom')"), absl::StatusCode::kInvalidArgument,
       "builtins.ValueError: boom"},
      {py.Exec("def broken(:"), absl::StatusCode::kInvalidArgument,
       "SyntaxError"},
      {py.Eval("1/0").status(), absl::StatusCode::kInvalidArgument,
       "ZeroDivisionError"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), c.code) << c.status;
    EXPECT_NE(c.status.message().find(c.needle), std::string::npos) << c.status;
    EXPECT_EQ(PyErr_Occurred(), nullptr);
  }
  EXPECT_TRUE(py.Preimport({"json", "pickle"}).ok());
}

TEST(EmbedInterpreterTest, StatusFromPyErrWithoutPendingError) {
  SharedInterpreter();
  absl::Status s = StatusFromPyErr("ctx");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.message(), "ctx: unknown error");
}

TEST(EmbedInterpreterDeathTest, BadStdlibPathFailsCleanly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Fresh process (threadsafe style re-executes the binary): initialisation
  // with no stdlib must come back as a status, not abort.
  EXPECT_EXIT(
      {
        InterpreterOptions options;
        options.module_search_paths = {"/nonexistent/dynahug"};
        absl::StatusOr<Interpreter> r = Interpreter::Create(options);
        fprintf(stderr, "status: %s\n", r.status().ToString().c_str());
        std::_Exit(r.ok() ? 0 : 3);
      },
      ::testing::ExitedWithCode(3), "Py_InitializeFromConfig");
}

TEST(EmbedInterpreterDeathTest, MovedGuardFinalizesOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        absl::StatusOr<Interpreter> r = Interpreter::Create();
        if (!r.ok()) std::_Exit(2);
        Interpreter moved = std::move(*r);
        if (r->active() || !moved.active()) std::_Exit(3);
        if (!moved.Preimport({"json"}).ok()) std::_Exit(4);
        { Interpreter sink = std::move(moved); }  // finalizes here
        if (Py_IsInitialized()) std::_Exit(5);
        // Re-initialising in the same process is refused.
        std::_Exit(Interpreter::Create().status().code() ==
                           absl::StatusCode::kFailedPrecondition
                       ? 0
                       : 6);
      },
      ::testing::ExitedWithCode(0), "");
}

// The zygote forks after its pre-imports: none of them may start a thread
// (OpenMP/BLAS pools), or the forked children would inherit a half-copied
// lock state. (Import and fork timings: bench/embed_bench.cc.)
TEST(EmbedInterpreterTest, PreimportsLeaveTheZygoteSingleThreaded) {
  Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Preimport({"torch", "numpy", "joblib", "sklearn", "pickle",
                            "sklearn.linear_model"})
                  .ok());
  absl::StatusOr<std::string> threads =
      py.Eval("len(__import__('os').listdir('/proc/self/task'))");
  ASSERT_TRUE(threads.ok()) << threads.status();
  EXPECT_EQ(*threads, "1");
  // And a forked child of it runs and exits normally.
  Interpreter::BeforeFork();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Interpreter::AfterForkChild();
    _exit(PyRun_SimpleString("import torch\nassert torch.ones(2).sum() == 2") ==
                  0
              ? 0
              : 1);
  }
  Interpreter::AfterForkParent();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace dynahug::runtime
