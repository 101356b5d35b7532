// Abuse inputs end inside their limits with a reason, and the scanner keeps
// going: pickle and memory bombs, an infinite loop, recursion bombs, fork
// attempts, a sleep and a thread spawner (fixture `integ_abuse`,
// gen_abuse_inputs.py, raw opcodes, never loaded outside the sandbox) are
// traced in ONE `dynahug trace` invocation with a small --timeout and
// --memory, followed by a benign pickle that must still load.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

using Status = proto::ChildExit::Status;

// Long enough for the deque bomb to reach the memory limit on a loaded
// 2-core machine: near the limit every small object first tries a 1 MiB
// pymalloc arena mmap that fails, then falls back to malloc (free heap the
// zygote left), ~1.2 million failing mmaps: 1.6 s idle, 4 s seen in CI.
constexpr int kTimeoutSeconds = 8;
constexpr int kMemoryMib = 256;
// The wall-clock kill is checked with millisecond polls; the child's wall
// time may pass the limit by scheduling delays on a loaded machine.
constexpr double kWallSlackMs = 1500;

std::string Dir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration/abuse";
}

struct AbuseCase {
  const char* name;               // file is <name>.pkl
  std::set<Status> statuses;      // acceptable exit statuses
  const char* error_type;         // load-result error_type ("" = any/none)
  std::set<std::string> blocked;  // one of these BLOCKED events must appear
  double max_wall_ms;             // bound on exit.wall_ms
  const char* loaded_type = "";   // for OK: the type the load returns
};

const double kLimitMs = kTimeoutSeconds * 1000 + kWallSlackMs;

// Why each status: the limit the input runs into first.
const std::vector<AbuseCase>& Cases() {
  static const auto* cases = new std::vector<AbuseCase>{
      // s = s + s, 40 times from 1 KiB: MemoryError at the AS limit.
      {"string-doubling-bomb",
       {proto::ChildExit::MEMORY_LIMIT},
       "builtins.MemoryError",
       {},
       kLimitMs},
      // bytearray(10**11): one allocation past the limit.
      {"bytearray-bomb",
       {proto::ChildExit::MEMORY_LIMIT},
       "builtins.MemoryError",
       {},
       kLimitMs},
      // deque(itertools.count()): grows until the AS limit; CPython 3.11
      // reports the failed block allocation as SystemError, not MemoryError.
      {"deque-count-bomb", {proto::ChildExit::MEMORY_LIMIT}, "", {}, kLimitMs},
      // 10**30 elements by reference: cheap to unpickle, must not be walked
      // (walking it would end in TIMEOUT or CPU_LIMIT, not OK; no tighter
      // wall-clock bound, which would only measure the machine's load).
      {"reference-bomb",
       {proto::ChildExit::OK},
       "",
       {},
       kLimitMs,
       "builtins.list"},
      // while True: pass -- whichever of wall clock and CPU comes first.
      {"infinite-loop",
       {proto::ChildExit::TIMEOUT, proto::ChildExit::CPU_LIMIT},
       "",
       {},
       kLimitMs},
      // time.sleep(1000): no CPU, only the wall clock can end it.
      {"sleep", {proto::ChildExit::TIMEOUT}, "", {}, kLimitMs},
      {"recursion-function",
       {proto::ChildExit::LOAD_FAILED},
       "builtins.RecursionError",
       {},
       kLimitMs},
      // repr() of a list nested 200000 deep (built iteratively by opcodes).
      {"recursion-nested-repr",
       {proto::ChildExit::LOAD_FAILED},
       "builtins.RecursionError",
       {},
       kLimitMs},
      // os.fork(): denied (EPERM), PermissionError ends the load.
      {"os-fork",
       {proto::ChildExit::LOAD_FAILED},
       "builtins.PermissionError",
       {"clone", "fork", "vfork"},
       kLimitMs},
      // while True: try os.fork() except OSError: pass.
      {"fork-bomb",
       {proto::ChildExit::TIMEOUT, proto::ChildExit::CPU_LIMIT},
       "",
       {"clone", "fork", "vfork"},
       kLimitMs},
      // Threads are allowed; each reserves its stack in the address space
      // until thread creation fails at the AS limit.
      {"thread-spawner",
       {proto::ChildExit::MEMORY_LIMIT},
       "builtins.RuntimeError",
       {},
       kLimitMs},
  };
  return *cases;
}

TEST(AbuseTest, EveryAbuseEndsWithinLimitsAndTheScannerKeepsGoing) {
  std::vector<std::string> argv = {DYNAHUG_BIN, "trace",
                                   "--format",  "json",
                                   "--timeout", std::to_string(kTimeoutSeconds),
                                   "--memory",  std::to_string(kMemoryMib)};
  for (const AbuseCase& c : Cases()) {
    argv.push_back(Dir() + "/" + c.name + ".pkl");
  }
  argv.push_back(Dir() + "/benign-after.pkl");
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->signal, 0) << run->err;
  ASSERT_EQ(run->exit_code, 0) << run->err;
  absl::StatusOr<std::vector<proto::Trace>> traces =
      ParseTraceDocument(run->out);
  ASSERT_TRUE(traces.ok()) << traces.status();
  ASSERT_EQ(traces->size(), Cases().size() + 1) << run->err;

  double sum_wall_ms = 0;
  for (size_t i = 0; i < Cases().size(); ++i) {
    const AbuseCase& c = Cases()[i];
    const proto::Trace& trace = (*traces)[i];
    SCOPED_TRACE(c.name);
    ASSERT_EQ(trace.file().path(), argv[8 + i]) << "traces out of order";
    const proto::ChildExit& exit = trace.exit();
    EXPECT_TRUE(c.statuses.count(exit.status()))
        << "status " << proto::ChildExit::Status_Name(exit.status())
        << ", reason '" << exit.reason() << "'\n"
        << DescribeEvents(trace);
    if (exit.status() != proto::ChildExit::OK) {
      EXPECT_NE(exit.reason(), "") << "a non-OK end needs a reason";
    }
    EXPECT_GT(exit.wall_ms(), 0);
    EXPECT_LE(exit.wall_ms(), c.max_wall_ms);
    sum_wall_ms += exit.wall_ms();
    if (exit.status() == proto::ChildExit::TIMEOUT) {
      // Killed at the limit, not earlier.
      EXPECT_GE(exit.wall_ms(), kTimeoutSeconds * 1000 - 50);
    }
    if (*c.error_type != '\0') {
      if (exit.status() == proto::ChildExit::LOAD_FAILED) {
        // The reason says why the load failed, not just "exit code 1".
        EXPECT_TRUE(absl::StrContains(exit.reason(), c.error_type))
            << exit.reason();
      }
      const proto::Event* result = LoadResultEvent(trace);
      ASSERT_NE(result, nullptr) << DescribeEvents(trace);
      EXPECT_EQ(ArgValue(*result, "error_type"), c.error_type)
          << ArgValue(*result, "error");
    }
    if (*c.loaded_type != '\0') {
      EXPECT_EQ(trace.loaded_type(), c.loaded_type);
    }
    if (!c.blocked.empty()) {
      int blocked = 0;
      for (const auto& e : trace.events()) {
        if (e.kind() == proto::Event::BLOCKED && e.blocked() &&
            c.blocked.count(e.name())) {
          ++blocked;
        }
      }
      EXPECT_GT(blocked, 0)
          << "no BLOCKED " << absl::StrJoin(c.blocked, "/") << "\n"
          << DescribeEvents(trace);
      // Every process-creating syscall was denied.
      for (const auto& s : trace.syscalls()) {
        if (s.name() == "fork" || s.name() == "vfork" || s.name() == "execve") {
          EXPECT_EQ(s.denied(), s.count()) << s.name();
        }
      }
    }
    std::printf(
        "[ INFO ] %-22s %-12s wall %7.1f ms  cpu %7.1f ms  rss %6llu "
        "KiB  %s\n",
        c.name, proto::ChildExit::Status_Name(exit.status()).c_str(),
        exit.wall_ms(), exit.cpu_ms(),
        static_cast<unsigned long long>(exit.max_rss_kib()),
        exit.reason().c_str());
  }

  // The scanner kept going: the benign file after the abuse loads normally.
  const proto::Trace& last = traces->back();
  EXPECT_EQ(last.file().path(), Dir() + "/benign-after.pkl");
  EXPECT_EQ(last.exit().status(), proto::ChildExit::OK)
      << last.exit().reason() << "\n"
      << DescribeEvents(last);
  EXPECT_EQ(last.loaded_type(), "builtins.dict");
  std::printf("[ INFO ] whole invocation %.0f ms (children %.0f ms)\n",
              run->wall_ms, sum_wall_ms);
}

}  // namespace
}  // namespace dynahug::integration
