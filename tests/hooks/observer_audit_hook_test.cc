// Audit hook: path classification and normalisation tables, live recording
// gated by the load-phase flag.
#include <cstdio>
#include <cstdlib>
#include <map>

#include "gtest/gtest.h"
#include "hooks/audit_hook.h"
#include "hooks/base/py_ref.h"
#include "hooks/base/sha256.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::hooks {
namespace {

using dynahug::testing::SharedInterpreter;

const PathContext kCtx = {"/data/models/m1/model.pt", "/tmp/dh-scratch-1",
                          "/home/alice", "/tmp/dh-scratch-1"};

TEST(ObserverAuditHookTest, ClassifyPath) {
  struct Case {
    const char* path;
    const char* want;
  } cases[] = {
      {"/data/models/m1/model.pt", "model-file"},
      {"/data/models/m1/../m1/./model.pt", "model-file"},
      {"/data/models/m1/config.json", "model-dir"},
      {"/data/models/m2/model.pt", "other"},
      {"/tmp/dh-scratch-1/x/y", "scratch"},
      {"out.txt", "scratch"},  // relative to cwd = scratch
      {"../../etc/passwd", "etc"},
      {"/tmp/dynahug_pwned/marker", "tmp"},
      {"/var/tmp/x", "tmp"},
      {"/dev/shm/x", "tmp"},
      {"/home/alice/.ssh/id_rsa", "home"},
      {"/home/bob/x", "home"},
      {"/root/.bashrc", "home"},
      {"/usr/lib/python3.11/os.py", "python-lib"},
      {"/usr/lib/python3/dist-packages/torch/__init__.py", "python-lib"},
      {"/usr/local/lib/python3.11/dist-packages/x.py", "python-lib"},
      {"/usr/lib/x86_64-linux-gnu/libc.so.6", "system"},
      {"/bin/sh", "system"},
      {"/etc/passwd", "etc"},
      {"/proc/self/environ", "proc"},
      {"/sys/kernel", "proc"},
      {"/dev/null", "dev"},
      {"/srv/x", "other"},
      {"/tmpfoo", "other"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ClassifyPath(c.path, kCtx), c.want) << c.path;
  }
}

TEST(ObserverAuditHookTest, NormalizePathAndSha) {
  EXPECT_EQ(NormalizePath("a/../b//c/.", "/x/y"), "/x/y/b/c");
  EXPECT_EQ(NormalizePath("/../../", "/x"), "/");
  EXPECT_EQ(Sha256Prefix(""), "e3b0c44298fc1c14");
  EXPECT_EQ(Sha256Prefix("abc"), "ba7816bf8f01cfea");
  EXPECT_EQ(Sha256Prefix(std::string(1000, 'a')), "41edece42d63e8d9");
}

std::map<std::string, std::string> ArgsOf(const proto::Event& e) {
  std::map<std::string, std::string> m;
  for (const auto& a : e.args()) m[a.key()] = a.value();
  return m;
}

// Each case: an audit event name and a Python expression for its argument
// tuple, and the normalised arguments expected.
TEST(ObserverAuditHookTest, NormalizeTable) {
  SharedInterpreter();
  struct Case {
    const char* event;
    const char* args_expr;
    std::map<std::string, std::string> want;
  } cases[] = {
      {"open",
       "('/tmp/x/y.txt', 'w', 577)",
       {{"path", "tmp"}, {"path_ext", ".txt"}, {"mode", "w"}}},
      {"open",
       "('/data/models/m1/sub/a.json', None, 0)",
       {{"path", "model-dir"},
        {"path_ext", ".json"},
        {"path_rel", "sub/a.json"},
        {"mode", "r"}}},
      {"open",
       "(b'/home/alice/.ssh/id_rsa', None, 0o1101)",
       {{"path", "home"}, {"mode", "wct"}}},
      {"open", "(3, 'rb', 0)", {{"path", "fd"}, {"mode", "rb"}}},
      {"socket.connect",
       "(None, ('127.0.0.1', 9))",
       {{"family", "AF_INET"}, {"address", "127.0.0.1:9"}}},
      {"socket.connect",
       "(None, '/tmp/dh-scratch-1/s')",
       {{"family", "AF_UNIX"}, {"address", "scratch"}}},
      {"socket.__new__",
       "(None, 10, 1, 0)",
       {{"family", "AF_INET6"}, {"type", "1"}}},
      {"subprocess.Popen",
       "('/bin/true', ['/bin/true', '-x'], None, None)",
       {{"executable", "/bin/true"}, {"argc", "2"}, {"env", "inherit"}}},
      {"subprocess.Popen",
       "(None, 'ls -l', None, {})",
       {{"executable", "ls"}, {"argc", "?"}, {"env", "set"}}},
      {"os.system",
       "(b'/bin/true --flag',)",
       {{"executable", "/bin/true"},
        {"sha256", Sha256Prefix("/bin/true --flag")},
        {"size", "16"}}},
      {"os.exec",
       "('/bin/true', ('/bin/true',), {})",
       {{"executable", "/bin/true"}, {"argc", "1"}}},
      {"os.posix_spawn",
       "('/bin/true', ['/bin/true'], {})",
       {{"executable", "/bin/true"}, {"argc", "1"}}},
      {"compile",
       "('print(1)', '<string>')",
       {{"sha256", Sha256Prefix("print(1)")},
        {"size", "8"},
        {"filename", "<string>"}}},
      {"compile",
       "(b'x=1', '/home/alice/evil.py')",
       {{"sha256", Sha256Prefix("x=1")},
        {"size", "3"},
        {"filename", "home"},
        {"filename_ext", ".py"}}},
      {"marshal.loads",
       "(b'abc',)",
       {{"sha256", "ba7816bf8f01cfea"}, {"size", "3"}}},
      {"import", "('json', None, [], [], [])", {{"module", "json"}}},
      {"ctypes.dlopen", "('libc.so.6',)", {{"library", "libc.so.6"}}},
      {"ctypes.dlopen",
       "('/home/alice/x.so',)",
       {{"library", "x.so"}, {"path", "home"}, {"path_ext", ".so"}}},
      {"ctypes.dlsym", "(None, 'system')", {{"symbol", "system"}}},
      {"pickle.find_class",
       "('posix', 'system')",
       {{"module", "posix"}, {"name", "system"}}},
      {"os.putenv", "(b'LD_PRELOAD', b'/x')", {{"key", "LD_PRELOAD"}}},
      {"object.__setattr__",
       "(object(), 'f', len)",
       {{"object", "builtins.object"},
        {"attribute", "f"},
        {"value", "builtins.builtin_function_or_method"}}},
      {"builtins.id", "(12345,)", {}},
      {"os.rename",
       "('/tmp/dh-scratch-1/a', '/etc/b')",
       {{"src", "scratch"}, {"src_rel", "a"}, {"dst", "etc"}}},
      {"some.unknown",
       "('/home/alice/secret.txt', 5, 2.5, b'xy', [1, 2], None)",
       {{"0", "home"},
        {"0_ext", ".txt"},
        {"1", "5"},
        {"2", "2.5"},
        {"3", "bytes[2]"},
        {"4", "builtins.list[2]"},
        {"5", "None"}}},
  };
  for (const Case& c : cases) {
    PyRef main = PyRef::Borrow(PyImport_AddModule("__main__"));
    PyObject* g = PyModule_GetDict(main.get());
    PyRef args(PyRun_String(c.args_expr, Py_eval_input, g, g));
    ASSERT_TRUE(args) << c.args_expr;
    proto::Event e = NormalizeAuditEvent(c.event, args.get(), kCtx, {});
    EXPECT_EQ(e.kind(), proto::Event::AUDIT);
    EXPECT_EQ(e.name(), c.event);
    EXPECT_EQ(ArgsOf(e), c.want) << c.event << " " << c.args_expr;
    EXPECT_EQ(PyErr_Occurred(), nullptr);
  }
}

TEST(ObserverAuditHookTest, ValuesAndArgumentCountAreCapped) {
  SharedInterpreter();
  PyRef args(Py_BuildValue("(ssssssssssss)", std::string(1000, 'x').c_str(),
                           "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                           "k"));
  AuditLimits limits;
  limits.max_value_bytes = 10;
  limits.max_args = 4;
  proto::Event e = NormalizeAuditEvent("x.y", args.get(), kCtx, limits);
  ASSERT_EQ(e.args_size(), 4);
  EXPECT_EQ(e.args(0).value(), "xxxxxxxxxx...");
}

TEST(ObserverAuditHookTest, RecordsOnlyWhileRecordingIsOn) {
  runtime::Interpreter& py = SharedInterpreter();
  AuditHook& hook = AuditHook::Instance();
  MemoryEventSink sink;
  PathContext ctx;
  ctx.scratch_dir = "/tmp";
  hook.Start(&sink, ctx);
  ASSERT_TRUE(py.Exec("open('/dev/null').close()").ok());
  EXPECT_TRUE(sink.events().empty());  // started but not recording
  hook.SetRecording(true);
  hook.SetPickleOffset(42);
  ASSERT_TRUE(py.Exec("open('/dev/null').close()\n"
                      "import sys\nsys.audit('dynahug.test.event', 'v')")
                  .ok());
  hook.SetRecording(false);
  ASSERT_TRUE(py.Exec("open('/dev/null').close()").ok());
  hook.Stop();
  hook.SetRecording(true);  // no sink: stays off
  EXPECT_FALSE(hook.recording());
  // Exec itself raises compile/exec events; keep the ones under test.
  std::vector<proto::Event> seen;
  for (const proto::Event& e : sink.events()) {
    if (e.name() == "open" || e.name() == "dynahug.test.event") {
      seen.push_back(e);
    }
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].name(), "open");
  EXPECT_EQ(seen[0].args(0).value(), "dev");
  EXPECT_EQ(seen[0].pickle_offset(), 42u);
  EXPECT_EQ(seen[1].name(), "dynahug.test.event");
  EXPECT_EQ(seen[1].args(0).value(), "v");
  EXPECT_TRUE(seen[1].has_pickle_offset());
}

TEST(ObserverAuditHookTest, InstallIsIdempotentOnceInstalled) {
  // The shared interpreter installed the hook before initialising.
  SharedInterpreter();
  ASSERT_TRUE(AuditHook::Instance().installed());
  EXPECT_TRUE(AuditHook::Instance().Install().ok());
  EXPECT_TRUE(AuditHook::Instance().VerifyActive().ok());
}

// The exit codes of the refusal check below, one per broken promise.
enum RefusalExit {
  kRefused = 0,
  kInitFailed = 2,
  kInstallAccepted = 3,
  kWrongInstallError = 4,
  kClaimsInstalled = 5,
  kVerifyAccepted = 6,
  kWrongVerifyError = 7,
  kEventsSeen = 8,
};

TEST(ObserverAuditHookDeathTest, InstallAfterInitIsRefusedWhenNotInstalled) {
  // A fresh process (threadsafe style re-executes the binary and runs only
  // this statement) where Python was initialised without the hook: a late
  // Install() must be refused rather than silently claim coverage of code
  // that already ran, and VerifyActive must report the hook missing.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        if (!dynahug::testing::InitializePythonWithoutAuditHook()) {
          std::_Exit(kInitFailed);
        }
        AuditHook& hook = AuditHook::Instance();
        absl::Status install = hook.Install();
        fprintf(stderr, "Install: %s\n", install.ToString().c_str());
        if (install.ok()) std::_Exit(kInstallAccepted);
        if (install.code() != absl::StatusCode::kFailedPrecondition) {
          std::_Exit(kWrongInstallError);
        }
        if (hook.installed()) std::_Exit(kClaimsInstalled);
        absl::Status verify = hook.VerifyActive();
        fprintf(stderr, "VerifyActive: %s\n", verify.ToString().c_str());
        if (verify.ok()) std::_Exit(kVerifyAccepted);
        if (verify.code() != absl::StatusCode::kFailedPrecondition) {
          std::_Exit(kWrongVerifyError);
        }
        // Nothing was hooked: Python-level audit events reach no callback.
        PyRun_SimpleString("import sys\nsys.audit('dynahug.t', 1)");
        if (hook.events_seen() != 0) std::_Exit(kEventsSeen);
        std::_Exit(kRefused);
      },
      ::testing::ExitedWithCode(kRefused),
      "Install: FAILED_PRECONDITION: AuditHook::Install: the interpreter is "
      "already initialised.*VerifyActive: FAILED_PRECONDITION: audit "
      "hook: not installed");
}

}  // namespace
}  // namespace dynahug::hooks
