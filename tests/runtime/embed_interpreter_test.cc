// Interpreter guard: isolation, audit hook installed and verified, error
// conversion, single-initialisation, and the zygote's fork floor.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "gtest/gtest.h"
#include "hooks/audit_hook.h"
#include "runtime/interpreter.h"
#include "runtime/py_ref.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::runtime {
namespace {

using dynahug::testing::SharedInterpreter;

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
      {"__import__('sys').flags.isolated", "1"},
      {"__import__('sys').flags.ignore_environment", "1"},
      {"__import__('sys').flags.no_user_site", "1"},
      {"__import__('sys').flags.inspect", "0"},
      {"__import__('sys').flags.verbose", "0"},
      {"__import__('sys').flags.dont_write_bytecode", "1"},
      {"'site' in __import__('sys').modules", "False"},
      {"__import__('sys').prefix", "/usr"},
      {"__import__('sys').executable", "/usr/bin/python3.11"},
      {"__import__('sys').version_info[:2]", "(3, 11)"},
      {"any('dynahug_evil' in p for p in __import__('sys').path)", "False"},
  };
  for (const Case& c : cases) EXPECT_EQ(Eval(c.expr), c.want) << c.expr;
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
  // Installing after initialisation is refused (idempotent when installed).
  EXPECT_TRUE(hook.Install().ok());
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

// Measurements for the zygote design; printed and recorded as properties.
TEST(EmbedInterpreterTest, MeasureInitTorchImportAndForkFloor) {
  Interpreter& py = SharedInterpreter();
  printf("interpreter init: %.2f ms\n", py.init_ms());
  RecordProperty("init_ms", std::to_string(py.init_ms()));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(py.Preimport({"torch"}).ok());
  double torch_ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(py.Preimport({"numpy", "joblib", "sklearn", "pickle",
                            "sklearn.linear_model"})
                  .ok());
  double rest_ms = std::chrono::duration<double, std::milli>(
                       std::chrono::steady_clock::now() - t0)
                       .count();
  printf(
      "import torch: %.1f ms; numpy+joblib+sklearn(+linear_model): %.1f ms\n",
      torch_ms, rest_ms);
  // The zygote forks: after the pre-imports it must still be
  // single-threaded (no OpenMP/BLAS pools started).
  absl::StatusOr<std::string> threads =
      py.Eval("len(__import__('os').listdir('/proc/self/task'))");
  ASSERT_TRUE(threads.ok());
  EXPECT_EQ(*threads, "1");
  absl::StatusOr<std::string> rss = py.Eval(
      "__import__('resource').getrusage(__import__('resource').RUSAGE_SELF)"
      ".ru_maxrss // 1024");
  ASSERT_TRUE(rss.ok());
  printf("zygote: %s thread(s), max RSS %s MiB\n", threads->c_str(),
         rss->c_str());
  constexpr int kForks = 30;
  double total = 0, worst = 0, in_fork = 0;
  for (int i = 0; i < kForks; ++i) {
    auto start = std::chrono::steady_clock::now();
    Interpreter::BeforeFork();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Interpreter::AfterForkChild();
      _exit(0);
    }
    in_fork += std::chrono::duration<double, std::milli>(
                   std::chrono::steady_clock::now() - start)
                   .count();
    Interpreter::AfterForkParent();
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    double ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - start)
                    .count();
    total += ms;
    worst = std::max(worst, ms);
  }
  printf(
      "fork+AfterForkChild+_exit+waitpid with torch imported: mean %.3f ms, "
      "max %.3f ms over %d (fork() itself, parent side: mean %.3f ms)\n",
      total / kForks, worst, kForks, in_fork / kForks);
  RecordProperty("torch_import_ms", std::to_string(torch_ms));
  RecordProperty("fork_exit_mean_ms", std::to_string(total / kForks));
}

}  // namespace
}  // namespace dynahug::runtime
