// "Load what the victim would load" (issue 9), the child's side: payloads
// that a plain torch.load/pickle.load process would run to the end must run
// to the end in the sandbox too, and the trace must show what they did.
// Harmless probes only (/tmp/dynahug_pwned/, 127.0.0.1:9, /bin/true); every
// test also checks that nothing reached the host.
//
//   - stdlib gadgets (idlelib, distutils) run for real instead of resolving
//     to stubs; a stdlib module the platform lacks fails as it would;
//   - a payload whose first step writes under /tmp goes on to its exec and
//     connect (private /tmp in the child);
//   - deferred work (atexit, alarms, timers, daemon threads) runs in the
//     child's shutdown phase, recorded between shutdown.begin/end;
//   - a payload wrapped in profile.run / cProfile.run runs (dynahug's
//     profiler gives way, and says so);
//   - webbrowser.open finds a browser and tries to run it (blocked).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"
#include "tests/security_test_util.h"

namespace dynahug::integration {
namespace {

constexpr char kPwnedDir[] = "/tmp/dynahug_pwned";

// A TCP listener on 127.0.0.1:9 that counts the connections queued during
// its life (the kernel completes them without accept()).
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(9);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    if (fd_ >= 0) setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd_ < 0 ||
        bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd_, 64) != 0) {
      error_ = std::strerror(errno);
      if (fd_ >= 0) close(fd_);
      fd_ = -1;
    }
  }
  ~Listener() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  int Drain() {
    int n = 0;
    for (int c; (c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
      close(c);
      ++n;
    }
    return n;
  }

 private:
  int fd_ = -1;
  std::string error_;
};

class VictimFidelityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      DYNAHUG_SECURITY_SKIP("needs root (namespaces, seccomp supervision)");
    }
    dir_ = absl::StrCat(
        DYNAHUG_TEST_DATA_DIR, "/fidelity-", getpid(), "-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(std::filesystem::create_directories(dir_));
    pwned_before_ = SnapshotTree(kPwnedDir);
  }
  void TearDown() override {
    // Nothing the payloads did reaches the host.
    const std::string diff =
        DiffSnapshots(pwned_before_, SnapshotTree(kPwnedDir));
    EXPECT_EQ(diff, "") << "SANDBOX ESCAPE: " << kPwnedDir << " changed:\n"
                        << diff;
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Writes each pickle, traces them all in one invocation, returns the
  // traces in the same order.
  std::vector<proto::Trace> TraceAll(const std::vector<std::string>& pickles) {
    std::vector<std::string> files;
    for (size_t i = 0; i < pickles.size(); ++i) {
      const std::string path = absl::StrCat(dir_, "/payload", i, ".pkl");
      std::ofstream(path, std::ios::binary) << pickles[i];
      files.push_back(path);
    }
    absl::StatusOr<TraceRun> run =
        TraceFiles(DYNAHUG_BIN, {"--timeout", "20"}, files);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? run->traces : std::vector<proto::Trace>();
  }
  proto::Trace TraceOne(const std::string& pickle) {
    std::vector<proto::Trace> t = TraceAll({pickle});
    return t.size() == 1 ? t[0] : proto::Trace();
  }

  std::string dir_;
  std::map<std::string, FileStamp> pwned_before_;
};

// Index of the first event of `kind` named `name` at or after `from`, or -1.
int Find(const proto::Trace& t, proto::Event::Kind kind, std::string_view name,
         int from = 0) {
  for (int i = from; i < t.events_size(); ++i) {
    if (t.events(i).kind() == kind && t.events(i).name() == name) return i;
  }
  return -1;
}

// The payload tried to run a program: the audit event of the call, and the
// kernel was asked for a process (denied).
bool TriedToRunAProgram(const proto::Trace& t, int from = 0, int to = -1) {
  if (to < 0) to = t.events_size();
  bool audit = false, blocked = false;
  for (int i = from; i < to; ++i) {
    const proto::Event& e = t.events(i);
    if (e.kind() == proto::Event::AUDIT &&
        (e.name() == "os.system" || e.name() == "subprocess.Popen" ||
         e.name() == "os.posix_spawn" || e.name() == "os.fork")) {
      audit = true;
    }
    if (e.kind() == proto::Event::BLOCKED && e.blocked() &&
        (e.name() == "clone" || e.name() == "clone3" || e.name() == "fork" ||
         e.name() == "vfork" || e.name() == "execve")) {
      blocked = true;
    }
  }
  return audit && blocked;
}

// No process was created, no connection made: each attempt was denied.
void ExpectNothingWentThrough(const proto::Trace& t) {
  for (const auto& s : t.syscalls()) {
    if (s.name() == "execve" || s.name() == "execveat" ||
        s.name() == "connect" || s.name() == "fork" || s.name() == "vfork") {
      EXPECT_EQ(s.denied(), s.count()) << s.name();
    }
  }
}

// --- 1. stdlib gadgets --------------------------------------------------------

// idlelib.run.Executive(None).runcode(source): IDLE's remote executor, in
// the idle-python3.11 package Debian splits out of the standard library.
std::string IdlelibRuncodePickle(const std::string& source) {
  return absl::StrCat("cbuiltins\ngetattr\n(cidlelib.run\nExecutive\n(NtR",
                      PickleUnicode("runcode"), "tR(", PickleUnicode(source), "tR.");
}

TEST_F(VictimFidelityTest, StdlibGadgetsRunForReal) {
  const std::string probe =
      "import os\n"
      "os.makedirs('/tmp/dynahug_pwned/idlelib', exist_ok=True)\n"
      "os.system('/bin/true')\n";
  const std::vector<proto::Trace> traces = TraceAll({
      IdlelibRuncodePickle(probe),
      // distutils.spawn.spawn(['/bin/true']) (python3-distutils).
      "cdistutils.spawn\nspawn\n((lV/bin/true\natR.",
      // nt is the standard library of another platform: the victim's load
      // fails with ModuleNotFoundError, so must this one (no stub).
      "cnt\nsystem\n(V/bin/true\ntR.",
  });
  ASSERT_EQ(traces.size(), 3u);
  const proto::Trace& idle = traces[0];
  const int g = Find(idle, proto::Event::GLOBAL, "idlelib.run.Executive");
  ASSERT_GE(g, 0) << DescribeEvents(idle);
  EXPECT_EQ(ArgValue(idle.events(g), "resolved"), "real") << DescribeEvents(idle);
  EXPECT_GE(Find(idle, proto::Event::AUDIT, "exec", g), 0)
      << "runcode did not exec the source\n"
      << DescribeEvents(idle);
  EXPECT_GE(Find(idle, proto::Event::AUDIT, "os.mkdir", g), 0)
      << DescribeEvents(idle);
  EXPECT_TRUE(TriedToRunAProgram(idle, g)) << DescribeEvents(idle);
  ExpectNothingWentThrough(idle);

  const proto::Trace& spawn = traces[1];
  const int s = Find(spawn, proto::Event::GLOBAL, "distutils.spawn.spawn");
  ASSERT_GE(s, 0) << DescribeEvents(spawn);
  EXPECT_EQ(ArgValue(spawn.events(s), "resolved"), "real");
  EXPECT_TRUE(TriedToRunAProgram(spawn, s)) << DescribeEvents(spawn);
  ExpectNothingWentThrough(spawn);

  const proto::Trace& nt = traces[2];
  EXPECT_EQ(nt.exit().status(), proto::ChildExit::LOAD_FAILED)
      << nt.exit().reason();
  EXPECT_NE(nt.exit().reason().find("ModuleNotFoundError"), std::string::npos)
      << nt.exit().reason();
  EXPECT_NE(nt.exit().reason().find("'nt'"), std::string::npos)
      << nt.exit().reason();
  for (const proto::Event& e : nt.events()) {
    EXPECT_NE(ArgValue(e, "resolved"), "stub") << e.name();
    EXPECT_NE(ArgValue(e, "stub"), "true") << e.name();
  }
}

// --- 2. a denied-looking first write does not stop the chain -----------------

TEST_F(VictimFidelityTest, PayloadRunsItsWholeChainAfterWritingUnderTmp) {
  Listener listener;
  const proto::Trace t = TraceOne(ExecPickle(
      "import os, socket\n"
      "os.makedirs('/tmp/dynahug_pwned/x')\n"
      "open('/tmp/dynahug_pwned/x/marker', 'w').write('chain')\n"
      "os.system('/bin/true')\n"
      "try:\n"
      "    s = socket.socket()\n"
      "    s.settimeout(1)\n"
      "    s.connect(('127.0.0.1', 9))\n"
      "except OSError:\n"
      "    pass\n"
      "open('/tmp/dynahug_pwned/x/done', 'w').write('end of chain')\n"));
  EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << t.exit().reason();
  const int mkdir = Find(t, proto::Event::AUDIT, "os.mkdir");
  ASSERT_GE(mkdir, 0) << DescribeEvents(t);
  EXPECT_TRUE(TriedToRunAProgram(t, mkdir)) << DescribeEvents(t);
  // The socket it asked for (denied: the connect never happens).
  const int connect = Find(t, proto::Event::AUDIT, "socket.__new__", mkdir);
  EXPECT_GE(connect, 0) << DescribeEvents(t);
  EXPECT_GE(Find(t, proto::Event::BLOCKED, "socket", mkdir), 0)
      << DescribeEvents(t);
  // The last step ran: a write-mode open after the socket.
  bool last_step = false;
  for (int i = std::max(connect, 0); i < t.events_size(); ++i) {
    const proto::Event& e = t.events(i);
    last_step |= e.kind() == proto::Event::AUDIT && e.name() == "open" &&
                 ArgValue(e, "mode").find('w') != std::string::npos;
  }
  EXPECT_TRUE(last_step) << DescribeEvents(t);
  ExpectNothingWentThrough(t);
  if (listener.ok()) {
    EXPECT_EQ(listener.Drain(), 0) << "SANDBOX ESCAPE: connection on :9";
  } else {
    DYNAHUG_SECURITY_SKIP("no listener on 127.0.0.1:9 (" << listener.error()
                                                         << ")");
  }
}

// --- 3. deferred work runs before the child exits ----------------------------

// Events between shutdown.begin and shutdown.end, as [begin, end) indices.
std::pair<int, int> ShutdownPhase(const proto::Trace& t) {
  const int begin = Find(t, proto::Event::LOG, "shutdown.begin");
  const int end = begin < 0 ? -1 : Find(t, proto::Event::LOG, "shutdown.end",
                                        begin);
  return {begin, end};
}

TEST_F(VictimFidelityTest, DeferredWorkRunsInTheShutdownPhase) {
  struct Case {
    const char* name;
    std::string pickle;
  };
  const std::string handler =
      "def h(*a):\n"
      "    import os\n"
      "    os.system('/bin/true')\n";
  const std::vector<Case> cases = {
      {"atexit.register(os.system, '/bin/true')",
       "catexit\nregister\n(cos\nsystem\nV/bin/true\ntR."},
      {"SIGALRM handler + setitimer(50 ms)",
       ExecPickle(handler +
                  "import signal\nsignal.signal(signal.SIGALRM, h)\n"
                  "signal.setitimer(signal.ITIMER_REAL, 0.05)\n")},
      {"SIGALRM handler + alarm(30): brought forward",
       ExecPickle(handler +
                  "import signal\nsignal.signal(signal.SIGALRM, h)\n"
                  "signal.alarm(30)\n")},
      // getattr(threading.Timer(0.1, os.system, ['/bin/true']), 'start')()
      {"threading.Timer(0.1, os.system, ['/bin/true']).start()",
       absl::StrCat("cbuiltins\ngetattr\n(cthreading\nTimer\n"
                    "(F0.1\ncos\nsystem\n(",
                    PickleUnicode("/bin/true"), "ltR", PickleUnicode("start"), "tR)R.")},
      {"daemon thread sleeping 50 ms",
       ExecPickle(handler +
                  "import threading, time\n"
                  "def later():\n"
                  "    time.sleep(0.05)\n"
                  "    h()\n"
                  "threading.Thread(target=later, daemon=True).start()\n")},
  };
  std::vector<std::string> pickles;
  for (const Case& c : cases) pickles.push_back(c.pickle);
  // Control: nothing deferred, no shutdown phase at all.
  pickles.push_back(ExecPickle("x = 1 + 1\n"));
  const std::vector<proto::Trace> traces = TraceAll(pickles);
  ASSERT_EQ(traces.size(), cases.size() + 1);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const proto::Trace& t = traces[i];
    EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << t.exit().reason();
    const auto [begin, end] = ShutdownPhase(t);
    ASSERT_GE(begin, 0) << DescribeEvents(t);
    ASSERT_GT(end, begin) << DescribeEvents(t);
    // The probe ran in the shutdown phase, and not before it.
    EXPECT_FALSE(TriedToRunAProgram(t, 0, begin)) << DescribeEvents(t);
    EXPECT_TRUE(TriedToRunAProgram(t, begin, end + 1)) << DescribeEvents(t);
    EXPECT_EQ(ArgValue(t.events(end), "threads_left"), "0") << DescribeEvents(t);
    ExpectNothingWentThrough(t);
  }
  const proto::Trace& control = traces.back();
  EXPECT_EQ(control.exit().status(), proto::ChildExit::OK);
  EXPECT_EQ(ShutdownPhase(control).first, -1) << DescribeEvents(control);
}

// --- 4. the payload's own profiler ----------------------------------------------

TEST_F(VictimFidelityTest, ProfilerWrappedPayloadRuns) {
  const std::string source = "import os\nos.system('/bin/true')\n";
  const std::vector<proto::Trace> traces = TraceAll({
      absl::StrCat("cprofile\nrun\n(", PickleUnicode(source), "tR."),
      absl::StrCat("ccProfile\nrun\n(", PickleUnicode(source), "tR."),
  });
  ASSERT_EQ(traces.size(), 2u);
  for (const proto::Trace& t : traces) {
    SCOPED_TRACE(t.file().path());
    EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << t.exit().reason();
    EXPECT_TRUE(TriedToRunAProgram(t)) << DescribeEvents(t);
    const int yielded = Find(t, proto::Event::LOG, "profiler.yielded");
    ASSERT_GE(yielded, 0) << DescribeEvents(t);
    EXPECT_FALSE(ArgValue(t.events(yielded), "to").empty());
    ExpectNothingWentThrough(t);
  }
  EXPECT_EQ(ArgValue(traces[0].events(Find(traces[0], proto::Event::LOG,
                                      "profiler.yielded")),
                "to"),
            "sys.setprofile");
}

// --- 5. a workstation: a browser to open ----------------------------------------

TEST_F(VictimFidelityTest, WebbrowserOpenReachesAnExec) {
  const proto::Trace t = TraceOne(absl::StrCat(
      "cwebbrowser\nopen\n(", PickleUnicode("http://127.0.0.1:9/"), "tR."));
  EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << t.exit().reason();
  EXPECT_TRUE(TriedToRunAProgram(t)) << DescribeEvents(t);
  // What it tried to run is one of the desktop's browsers.
  bool browser = false;
  for (const proto::Event& e : t.events()) {
    if (e.kind() != proto::Event::AUDIT || e.name() != "subprocess.Popen") {
      continue;
    }
    for (const auto& a : e.args()) {
      browser |= a.value().find("xdg-open") != std::string::npos ||
                 a.value().find("www-browser") != std::string::npos;
    }
  }
  EXPECT_TRUE(browser) << DescribeEvents(t);
  ExpectNothingWentThrough(t);
}

}  // namespace
}  // namespace dynahug::integration
