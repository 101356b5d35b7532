// Tests of sandbox/worker_pool: real worker processes with C++ fake handlers
// (every error path: handler errors, crashes, hangs, malformed replies,
// failing factories, parent death, interruption). The tracing handler:
// tests/runtime/trace_worker_test.cc.
//
// No assertion depends on how fast this machine is: tests order events with
// files the handlers create and wait for (await:/touch:), and wall-clock
// values appear only as generous ceilings against hangs. Timing belongs in
// bench/.
#include "sandbox/worker_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynahug::sandbox {
namespace {

using ::testing::HasSubstr;

// Replies "<worker index>:<request>", or acts on commands:
//   "sleep:MS"   sleeps MS milliseconds first
//   "error"      returns NotFound
//   "crash"      raises SIGSEGV
//   "exit"       _exit(7)
//   "hang"       sleeps forever
//   "big:N"      replies N bytes (no worker prefix)
//   "garbage"    writes a zero-length frame on the socket, then replies
//   "touch:PATH" creates the file PATH
//   "await:PATH" waits until the file PATH exists (at most 60 s)
//   "hang:PATH"  creates PATH, then sleeps forever
//   "sigmask"    replies the worker's blocked signals, as "<sig>,<sig>,"
class FakeHandler final : public WorkerHandler {
 public:
  explicit FakeHandler(int index) : index_(index) {}
  absl::StatusOr<std::string> Handle(std::string_view request) override {
    const std::string r(request);
    if (r.rfind("touch:", 0) == 0 || r.rfind("hang:", 0) == 0) {
      std::ofstream(r.substr(r.find(':') + 1)) << "x";
      if (r[0] == 'h') {
        for (;;) pause();
      }
    } else if (r.rfind("await:", 0) == 0) {
      const std::string path = r.substr(6);
      for (int i = 0; i < 12000 && !std::filesystem::exists(path); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!std::filesystem::exists(path)) {
        return absl::DeadlineExceededError(path + " never appeared");
      }
    } else if (r == "sigmask") {
      sigset_t blocked;
      sigprocmask(SIG_SETMASK, nullptr, &blocked);
      std::string out;
      for (int sig = 1; sig < NSIG; ++sig) {
        if (sigismember(&blocked, sig) == 1) absl::StrAppend(&out, sig, ",");
      }
      return out;
    } else if (r.rfind("sleep:", 0) == 0) {
      int ms = 0;
      (void)absl::SimpleAtoi(r.substr(6), &ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    } else if (r == "error") {
      return absl::NotFoundError("no such thing");
    } else if (r == "crash") {
      raise(SIGSEGV);
    } else if (r == "exit") {
      _exit(7);
    } else if (r == "hang") {
      for (;;) pause();
    } else if (r.rfind("big:", 0) == 0) {
      size_t n = 0;
      (void)absl::SimpleAtoi(r.substr(4), &n);
      std::string out(n, '\0');
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(i * 31 + 7);
      return out;
    } else if (r == "garbage") {
      const char zero[4] = {0, 0, 0, 0};
      (void)!write(3, zero, sizeof(zero));
    }
    return absl::StrCat(index_, ":", r);
  }

 private:
  int index_;
};

WorkerFactory FakeFactory() {
  return [](int index) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> {
    return std::make_unique<FakeHandler>(index);
  };
}

std::vector<WorkerJob> Jobs(const std::vector<std::string>& requests) {
  std::vector<WorkerJob> jobs;
  for (const auto& r : requests) jobs.push_back({r, {}});
  return jobs;
}

struct Collected {
  std::vector<size_t> order;
  std::vector<absl::StatusOr<std::string>> results;
};

Collected RunAll(WorkerPool& pool, const std::vector<WorkerJob>& jobs) {
  Collected c;
  absl::Status s =
      pool.Run(jobs, [&](size_t i, absl::StatusOr<std::string> reply) {
        c.order.push_back(i);
        c.results.push_back(std::move(reply));
      });
  EXPECT_TRUE(s.ok()) << s;
  return c;
}

// The reply's text after "<worker>:".
std::string Payload(const absl::StatusOr<std::string>& r) {
  if (!r.ok()) return "ERROR " + std::string(r.status().message());
  return r->substr(r->find(':') + 1);
}
int WorkerOf(const absl::StatusOr<std::string>& r) {
  int w = -1;
  if (r.ok()) (void)absl::SimpleAtoi(r->substr(0, r->find(':')), &w);
  return w;
}

// A path unique to this test process for handler-created files.
std::string TempPath(const std::string& name) {
  return absl::StrCat(std::filesystem::temp_directory_path().string(),
                      "/worker_pool_test_", getpid(), "_", name);
}

// True when `pid` is not a child of ours and is dead (gone, or a zombie
// waiting for someone else to reap it).
bool Gone(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) >= 0 || errno != ECHILD) return false;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         line[paren + 2] == 'Z';
}

TEST(WorkerPoolTest, RejectsBadOptions) {
  struct Case {
    const char* name;
    int workers;
    size_t lookahead;
    bool factory;
  };
  for (const Case& c :
       {Case{"zero workers", 0, 8, true},
        Case{"too many workers", 5000, 8, true},
        Case{"zero lookahead", 2, 0, true}, Case{"no factory", 2, 8, false}}) {
    WorkerPoolOptions options;
    options.workers = c.workers;
    options.lookahead = c.lookahead;
    auto pool =
        WorkerPool::Create(c.factory ? FakeFactory() : nullptr, options);
    EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
  }
}

TEST(WorkerPoolTest, RepliesInInputOrderAcrossWorkers) {
  WorkerPoolOptions options;
  options.workers = 3;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  // Early jobs are slow so later ones finish first.
  std::vector<std::string> requests;
  for (int i = 0; i < 30; ++i) {
    requests.push_back(absl::StrCat("sleep:", (30 - i) % 7 * 3));
  }
  Collected c = RunAll(**pool, Jobs(requests));
  ASSERT_EQ(c.order.size(), requests.size());
  std::set<int> workers_used;
  for (size_t i = 0; i < c.order.size(); ++i) {
    EXPECT_EQ(c.order[i], i);
    ASSERT_TRUE(c.results[i].ok()) << c.results[i].status();
    EXPECT_EQ(Payload(c.results[i]), requests[i]);
    workers_used.insert(WorkerOf(c.results[i]));
  }
  EXPECT_EQ(workers_used.size(), 3u);
  EXPECT_EQ((*pool)->stats().jobs, 30u);
  EXPECT_EQ((*pool)->stats().restarts, 0u);
  EXPECT_EQ((*pool)->stats().job_wall_ms.size(), 30u);

  // The pool is reusable, and an empty run calls nothing.
  Collected again = RunAll(**pool, Jobs({"a", "b"}));
  ASSERT_EQ(again.results.size(), 2u);
  EXPECT_EQ(Payload(again.results[1]), "b");
  Collected none = RunAll(**pool, {});
  EXPECT_TRUE(none.order.empty());
}

TEST(WorkerPoolTest, HandlerErrorsKeepTheirCodeAndTheWorker) {
  WorkerPoolOptions options;
  options.workers = 1;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const pid_t before = (*pool)->worker_pids()[0];
  Collected c = RunAll(**pool, Jobs({"x", "error", "y"}));
  ASSERT_EQ(c.results.size(), 3u);
  EXPECT_EQ(Payload(c.results[0]), "x");
  EXPECT_EQ(c.results[1].status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.results[1].status().message(), "no such thing");
  EXPECT_EQ(Payload(c.results[2]), "y");
  EXPECT_EQ((*pool)->worker_pids()[0], before);
  EXPECT_EQ((*pool)->stats().restarts, 0u);
}

TEST(WorkerPoolTest, DeadWorkerFailsItsJobAndIsReplaced) {
  struct Case {
    const char* request;
    const char* how;
  };
  for (const Case& c : {Case{"crash", "signal 11"}, Case{"exit", "exit 7"}}) {
    WorkerPoolOptions options;
    options.workers = 2;
    auto pool = WorkerPool::Create(FakeFactory(), options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    const std::vector<pid_t> before = (*pool)->worker_pids();
    Collected r = RunAll(**pool, Jobs({"a", c.request, "b", "c", "d"}));
    ASSERT_EQ(r.results.size(), 5u) << c.request;
    EXPECT_FALSE(r.results[1].ok()) << c.request;
    EXPECT_THAT(std::string(r.results[1].status().message()),
                HasSubstr("died while handling request 1"));
    EXPECT_THAT(std::string(r.results[1].status().message()), HasSubstr(c.how));
    for (size_t i : {0, 2, 3, 4}) {
      EXPECT_TRUE(r.results[i].ok()) << c.request << " " << i;
    }
    EXPECT_EQ((*pool)->stats().restarts, 1u);
    const std::vector<pid_t> after = (*pool)->worker_pids();
    int replaced = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      if (after[i] != before[i]) {
        ++replaced;
        EXPECT_TRUE(Gone(before[i])) << "old worker not reaped";
      }
    }
    EXPECT_EQ(replaced, 1) << c.request;
  }
}

TEST(WorkerPoolTest, StuckWorkerIsKilledAtTheJobTimeout) {
  WorkerPoolOptions options;
  options.workers = 2;
  // Long enough for an instant job on a loaded machine; the hanging ones
  // can only end by the timeout.
  options.job_timeout = absl::Seconds(2);
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  Collected r = RunAll(**pool, Jobs({"hang", "a", "b", "hang", "c"}));
  ASSERT_EQ(r.results.size(), 5u);
  for (size_t i : {0, 3}) {
    EXPECT_FALSE(r.results[i].ok());
    EXPECT_THAT(std::string(r.results[i].status().message()),
                HasSubstr("exceeded the job timeout"));
    EXPECT_THAT(std::string(r.results[i].status().message()),
                HasSubstr("signal 9"));
  }
  for (size_t i : {1, 2, 4}) EXPECT_TRUE(r.results[i].ok()) << i;
  EXPECT_EQ((*pool)->stats().restarts, 2u);
}

TEST(WorkerPoolTest, MalformedReplyIsAProtocolError) {
  WorkerPoolOptions options;
  options.workers = 1;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  Collected r = RunAll(**pool, Jobs({"garbage", "after"}));
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_FALSE(r.results[0].ok());
  EXPECT_THAT(std::string(r.results[0].status().message()),
              HasSubstr("malformed reply"));
  EXPECT_EQ(Payload(r.results[1]), "after");
  EXPECT_EQ((*pool)->stats().restarts, 1u);
}

TEST(WorkerPoolTest, OversizedReplyIsRejected) {
  WorkerPoolOptions options;
  options.workers = 1;
  options.max_reply_bytes = 1000;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  Collected r = RunAll(**pool, Jobs({"big:5000", "big:100"}));
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_THAT(std::string(r.results[0].status().message()),
              HasSubstr("malformed reply (length 5001)"));
  ASSERT_TRUE(r.results[1].ok());
  EXPECT_EQ(r.results[1]->size(), 100u);
}

TEST(WorkerPoolTest, LargeRepliesArriveIntact) {
  WorkerPoolOptions options;
  options.workers = 2;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const size_t n = 8u << 20;
  Collected r = RunAll(**pool, Jobs({absl::StrCat("big:", n), "small",
                                     absl::StrCat("big:", n / 3)}));
  ASSERT_EQ(r.results.size(), 3u);
  for (size_t i : {0, 2}) {
    ASSERT_TRUE(r.results[i].ok());
    const std::string& out = *r.results[i];
    const size_t size = i == 0 ? n : n / 3;
    ASSERT_EQ(out.size(), size);
    for (size_t k = 0; k < size; k += 4099) {
      ASSERT_EQ(out[k], static_cast<char>(k * 31 + 7)) << k;
    }
  }
}

TEST(WorkerPoolTest, FactoryErrorAnswersEveryRequest) {
  WorkerPoolOptions options;
  options.workers = 2;
  auto pool = WorkerPool::Create(
      [](int) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> {
        return absl::FailedPreconditionError("no interpreter for you");
      },
      options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  Collected r = RunAll(**pool, Jobs({"a", "b", "c"}));
  ASSERT_EQ(r.results.size(), 3u);
  for (const auto& result : r.results) {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(result.status().message(), "no interpreter for you");
  }
  EXPECT_EQ((*pool)->stats().restarts, 0u);
}

TEST(WorkerPoolTest, WorkersThatCannotStartDoNotLoopForever) {
  WorkerPoolOptions options;
  options.workers = 1;
  auto pool = WorkerPool::Create(
      [](int) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> { _exit(9); },
      options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::vector<absl::StatusOr<std::string>> results;
  absl::Status s = (*pool)->Run(Jobs({"a", "b", "c", "d", "e", "f"}),
                                [&](size_t, absl::StatusOr<std::string> r) {
                                  results.push_back(std::move(r));
                                });
  // Either every job failed (the request reached the worker before it
  // died) or the pool gave up with a clear error; nothing succeeded and
  // nothing hung.
  for (const auto& r : results) {
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("exit 9"));
  }
  if (!s.ok()) {
    EXPECT_THAT(std::string(s.message()), HasSubstr("keeps dying"));
  } else {
    EXPECT_EQ(results.size(), 6u);
  }
}

// Read by worker factories in the worker, i.e. as it was when the worker
// was forked.
bool g_workers_die_at_start = false;

// Waits until the child `pid` has exited, without reaping it (the pool
// does); false after `ceiling`.
bool AwaitExitUnreaped(pid_t pid, std::chrono::seconds ceiling) {
  const auto deadline = std::chrono::steady_clock::now() + ceiling;
  while (std::chrono::steady_clock::now() < deadline) {
    siginfo_t info{};
    if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(WorkerPoolTest, RecoversOnTheNextRunAfterWorkersCouldNotStart) {
  // Workers forked while the flag is set die at start.
  g_workers_die_at_start = true;
  WorkerPoolOptions options;
  options.workers = 2;
  auto pool = WorkerPool::Create(
      [](int index) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> {
        if (g_workers_die_at_start) _exit(9);
        return std::make_unique<FakeHandler>(index);
      },
      options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  size_t succeeded = 0;
  (void)(*pool)->Run(
      Jobs({"a", "b", "c", "d", "e", "f", "g", "h"}),
      [&](size_t, absl::StatusOr<std::string> r) { succeeded += r.ok(); });
  EXPECT_EQ(succeeded, 0u);
  // Every worker the pool holds now was forked with the flag set: once they
  // are dead, the next Run() must replace them all.
  for (pid_t pid : (*pool)->worker_pids()) {
    if (pid > 0) {
      ASSERT_TRUE(AwaitExitUnreaped(pid, std::chrono::seconds(60))) << pid;
    }
  }
  g_workers_die_at_start = false;
  Collected r = RunAll(**pool, Jobs({"x", "y", "z"}));
  ASSERT_EQ(r.results.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(r.results[i].ok()) << r.results[i].status();
    EXPECT_EQ(Payload(r.results[i]), std::string(1, "xyz"[i]));
  }
}

TEST(WorkerPoolTest, AFreeWorkerPrefersAJobItsLibrariesServedBefore) {
  WorkerPoolOptions options;
  options.workers = 2;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  // Both workers are free at the start of a run and take pending jobs in
  // slot order: worker 0 serves torch, worker 1 numpy.
  Collected first = RunAll(**pool, {{"t1", {"torch"}}, {"n1", {"numpy"}}});
  ASSERT_EQ(first.results.size(), 2u);
  EXPECT_EQ(WorkerOf(first.results[0]), 0);
  EXPECT_EQ(WorkerOf(first.results[1]), 1);
  EXPECT_EQ((*pool)->stats().affinity_hits, 0u);
  // The numpy job first: plain FIFO would give it to worker 0; worker 0
  // skips it for the torch job, which leaves it to worker 1.
  Collected second = RunAll(**pool, {{"n2", {"numpy"}}, {"t2", {"torch"}}});
  ASSERT_EQ(second.results.size(), 2u);
  EXPECT_EQ(Payload(second.results[0]), "n2");
  EXPECT_EQ(WorkerOf(second.results[0]), 1);
  EXPECT_EQ(WorkerOf(second.results[1]), 0);
  EXPECT_EQ((*pool)->stats().affinity_hits, 2u);
}

TEST(WorkerPoolTest, LookaheadBoundsWorkInFlight) {
  // Job 0 waits for a file that job 1 creates. With a window of one job
  // past the oldest unreported one, job 1 cannot start before job 0 ends:
  // job 0 runs into the job timeout. With the default window both run at
  // once and both succeed.
  for (size_t lookahead : {size_t{1}, size_t{64}}) {
    const std::string flag = TempPath(absl::StrCat("lookahead_", lookahead));
    std::filesystem::remove(flag);
    WorkerPoolOptions options;
    options.workers = 2;
    options.lookahead = lookahead;
    options.job_timeout =
        lookahead == 1 ? absl::Seconds(1) : absl::Seconds(120);
    auto pool = WorkerPool::Create(FakeFactory(), options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    Collected r =
        RunAll(**pool, Jobs({"await:" + flag, "touch:" + flag, "after"}));
    ASSERT_EQ(r.results.size(), 3u);
    if (lookahead == 1) {
      EXPECT_THAT(std::string(r.results[0].status().message()),
                  HasSubstr("exceeded the job timeout"));
      // Every job ran on worker 0's slot: worker 1 never got one.
      EXPECT_EQ((*pool)->stats().jobs_per_worker[1], 0u);
    } else {
      EXPECT_TRUE(r.results[0].ok()) << r.results[0].status();
      EXPECT_GT((*pool)->stats().jobs_per_worker[1], 0u);
    }
    EXPECT_TRUE(r.results[1].ok()) << r.results[1].status();
    EXPECT_TRUE(r.results[2].ok()) << r.results[2].status();
    std::filesystem::remove(flag);
  }
}

TEST(WorkerPoolTest, ShutdownReapsEveryWorker) {
  std::vector<pid_t> pids;
  {
    WorkerPoolOptions options;
    options.workers = 3;
    auto pool = WorkerPool::Create(FakeFactory(), options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    RunAll(**pool, Jobs({"a", "b", "c", "d"}));
    pids = (*pool)->worker_pids();
  }
  ASSERT_EQ(pids.size(), 3u);
  for (pid_t pid : pids) EXPECT_TRUE(Gone(pid)) << pid;
  int status = 0;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(WorkerPoolTest, ShutdownKillsAWorkerThatDoesNotExit) {
  // A worker that never reads its socket never sees EOF: the destructor
  // must SIGKILL it after the grace period.
  std::vector<pid_t> pids;
  {
    WorkerPoolOptions options;
    options.workers = 2;
    options.shutdown_grace = absl::Milliseconds(200);
    auto pool = WorkerPool::Create(
        [](int) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> {
          for (;;) pause();
        },
        options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pids = (*pool)->worker_pids();
  }
  for (pid_t pid : pids) EXPECT_TRUE(Gone(pid)) << pid;
}

TEST(WorkerPoolTest, WorkersAreKilledWhenTheirParentIsKilled) {
  // This process adopts the orphaned workers (child subreaper), so they stay
  // zombies until reaped here: their pids cannot be reused and their wait
  // status shows how they ended. The workers never read their sockets, so
  // they cannot exit on their own when the parent's end closes: only
  // PR_SET_PDEATHSIG ends them.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  // Each worker creates its file once it runs its factory (past the
  // PR_SET_PDEATHSIG set-up): the parent dies only after that.
  const std::string started[2] = {TempPath("started0"), TempPath("started1")};
  for (const auto& f : started) std::filesystem::remove(f);
  const pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    WorkerPoolOptions options;
    options.workers = 2;
    auto pool = WorkerPool::Create(
        [&started](
            int index) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> {
          std::ofstream(started[index]) << "x";
          for (;;) pause();
        },
        options);
    if (!pool.ok()) _exit(1);
    for (int i = 0; i < 12000; ++i) {
      if (std::filesystem::exists(started[0]) &&
          std::filesystem::exists(started[1])) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::vector<pid_t> pids = (*pool)->worker_pids();
    (void)!write(pipefd[1], pids.data(), pids.size() * sizeof(pid_t));
    kill(getpid(), SIGKILL);  // no destructor runs
  }
  close(pipefd[1]);
  pid_t pids[2] = {0, 0};
  ASSERT_EQ(read(pipefd[0], pids, sizeof(pids)),
            static_cast<ssize_t>(sizeof(pids)));
  close(pipefd[0]);
  int status = 0;
  ASSERT_EQ(waitpid(middle, &status, 0), middle);
  for (pid_t pid : pids) {
    // A ceiling against a hang, not a timing claim.
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    ASSERT_GE(pidfd, 0) << pid;
    pollfd p{pidfd, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 60'000), 1) << "worker " << pid << " survived";
    close(pidfd);
    if (p.revents == 0) kill(pid, SIGKILL);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "worker " << pid << " wait status " << status;
  }
  for (const auto& f : started) {
    EXPECT_TRUE(std::filesystem::exists(f)) << f;
    std::filesystem::remove(f);
  }
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
}

// A pipe whose read end serves as WorkerPoolOptions::interrupt_fd.
struct InterruptPipe {
  InterruptPipe() { EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0); }
  ~InterruptPipe() {
    close(fds[0]);
    close(fds[1]);
  }
  void Fire() { EXPECT_EQ(write(fds[1], "x", 1), 1); }
  void Drain() {
    char c;
    EXPECT_EQ(read(fds[0], &c, 1), 1);
  }
  int fds[2] = {-1, -1};
};

TEST(WorkerPoolTest, InterruptStopsSchedulingAndKillsEveryWorker) {
  InterruptPipe interrupt;
  WorkerPoolOptions options;
  options.workers = 2;
  options.interrupt_fd = interrupt.fds[0];
  // Without a working interruption the endless jobs end here (and the test
  // fails) instead of hanging.
  options.job_timeout = absl::Seconds(120);
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const std::vector<pid_t> before = (*pool)->worker_pids();
  const std::string busy0 = TempPath("busy0"), busy1 = TempPath("busy1"),
                    later = TempPath("later");
  for (const auto& p : {busy0, busy1, later}) std::filesystem::remove(p);
  // Fires once both workers are inside their (endless) jobs.
  std::thread firer([&] {
    for (int i = 0; i < 12000; ++i) {
      if (std::filesystem::exists(busy0) && std::filesystem::exists(busy1)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    interrupt.Fire();
  });
  std::vector<size_t> reported;
  absl::Status s = (*pool)->Run(
      Jobs({"hang:" + busy0, "hang:" + busy1, "touch:" + later, "x"}),
      [&](size_t i, absl::StatusOr<std::string>) { reported.push_back(i); });
  firer.join();
  EXPECT_TRUE(std::filesystem::exists(busy0));
  EXPECT_TRUE(std::filesystem::exists(busy1));
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("0 of 4 jobs reported"));
  EXPECT_TRUE(reported.empty());
  // Nothing was handed out after the interruption, and no worker was
  // replaced.
  EXPECT_FALSE(std::filesystem::exists(later));
  EXPECT_EQ((*pool)->stats().jobs, 2u);
  EXPECT_EQ((*pool)->stats().restarts, 0u);
  // The workers were killed and reaped by Run() itself.
  for (pid_t pid : before) EXPECT_TRUE(Gone(pid)) << pid;
  for (pid_t pid : (*pool)->worker_pids()) EXPECT_LE(pid, 0);
  // Still interrupted: the next Run() starts nothing.
  s = (*pool)->Run(
      Jobs({"touch:" + later}),
      [&](size_t i, absl::StatusOr<std::string>) { reported.push_back(i); });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_FALSE(std::filesystem::exists(later));
  EXPECT_TRUE(reported.empty());
  // Once the interruption is consumed, the pool works again with fresh
  // workers.
  interrupt.Drain();
  Collected r = RunAll(**pool, Jobs({"a", "b"}));
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_EQ(Payload(r.results[1]), "b");
  for (pid_t pid : (*pool)->worker_pids()) EXPECT_GT(pid, 0);
  for (const auto& p : {busy0, busy1, later}) std::filesystem::remove(p);
}

TEST(WorkerPoolTest, WorkersStartWithNoSignalsBlocked) {
  // A caller that reads SIGINT/SIGTERM from a signalfd blocks them; its
  // workers must still die of them.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &block, &old), 0);
  WorkerPoolOptions options;
  options.workers = 1;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_EQ(sigprocmask(SIG_SETMASK, &old, nullptr), 0);
  ASSERT_TRUE(pool.ok()) << pool.status();
  Collected r = RunAll(**pool, Jobs({"sigmask"}));
  ASSERT_EQ(r.results.size(), 1u);
  ASSERT_TRUE(r.results[0].ok()) << r.results[0].status();
  EXPECT_EQ(*r.results[0], "") << "blocked in the worker: " << *r.results[0];
}

}  // namespace
}  // namespace dynahug::sandbox
