// Tests of runtime/worker_pool: real worker processes, first with C++ fake
// handlers (every error path: handler errors, crashes, hangs, malformed
// replies, failing factories, parent death), then with the real tracing
// handler on small benign files (CTest fixture worker_pool_inputs).
#include "runtime/worker_pool.h"

#include <fcntl.h>
#include <signal.h>
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
#include "sandbox/child_launcher.h"

namespace dynahug::runtime {
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
class FakeHandler final : public WorkerHandler {
 public:
  explicit FakeHandler(int index) : index_(index) {}
  absl::StatusOr<std::string> Handle(std::string_view request) override {
    const std::string r(request);
    if (r.rfind("sleep:", 0) == 0) {
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
  options.job_timeout = absl::Milliseconds(300);
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const auto start = std::chrono::steady_clock::now();
  Collected r = RunAll(**pool, Jobs({"hang", "a", "b", "hang", "c"}));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
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
  EXPECT_LT(seconds, 5.0);
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

TEST(WorkerPoolTest, RecoversOnTheNextRunAfterWorkersCouldNotStart) {
  // Workers die at start while a flag file exists.
  const std::string flag =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/worker_pool_test_", getpid(), "_die");
  { std::ofstream(flag) << "1"; }
  WorkerPoolOptions options;
  options.workers = 2;
  auto pool = WorkerPool::Create(
      [flag](int index) -> absl::StatusOr<std::unique_ptr<WorkerHandler>> {
        if (std::filesystem::exists(flag)) _exit(9);
        return std::make_unique<FakeHandler>(index);
      },
      options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  size_t succeeded = 0;
  (void)(*pool)->Run(
      Jobs({"a", "b", "c", "d", "e", "f", "g", "h"}),
      [&](size_t, absl::StatusOr<std::string> r) { succeeded += r.ok(); });
  EXPECT_EQ(succeeded, 0u);
  std::filesystem::remove(flag);
  // Workers forked while the flag existed are gone by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Collected r = RunAll(**pool, Jobs({"x", "y", "z"}));
  ASSERT_EQ(r.results.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(r.results[i].ok()) << r.results[i].status();
    EXPECT_EQ(Payload(r.results[i]), std::string(1, "xyz"[i]));
  }
}

TEST(WorkerPoolTest, AffinityKeepsLibrariesOnTheirWorkers) {
  WorkerPoolOptions options;
  options.workers = 2;
  auto pool = WorkerPool::Create(FakeFactory(), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  // Alternating kinds: plain FIFO would give both workers both kinds.
  std::vector<WorkerJob> jobs;
  for (int i = 0; i < 20; ++i) {
    jobs.push_back({"sleep:10", {i % 2 == 0 ? "torch" : "numpy"}});
  }
  Collected r = RunAll(**pool, jobs);
  ASSERT_EQ(r.results.size(), jobs.size());
  std::map<std::string, std::map<int, int>> count;  // kind -> worker -> jobs
  for (size_t i = 0; i < jobs.size(); ++i) {
    ASSERT_TRUE(r.results[i].ok());
    ++count[jobs[i].needs[0]][WorkerOf(r.results[i])];
  }
  // The first job of each kind picks the worker; the rest follow it (a
  // worker that runs out of its own kind near the end may take one of the
  // other's: tolerated, it is what keeps both busy).
  const int torch_worker = WorkerOf(r.results[0]);
  const int numpy_worker = WorkerOf(r.results[1]);
  EXPECT_NE(torch_worker, numpy_worker);
  EXPECT_GE(count["torch"][torch_worker], 8);
  EXPECT_GE(count["numpy"][numpy_worker], 8);
  EXPECT_GE((*pool)->stats().affinity_hits, 16u);
}

TEST(WorkerPoolTest, LookaheadBoundsWorkInFlight) {
  // With a window of one job past the oldest unreported one, a second
  // worker can never start: four 100 ms jobs take >= 400 ms. With the
  // default window they take about 200 ms on two workers.
  auto timed = [](size_t lookahead) {
    WorkerPoolOptions options;
    options.workers = 2;
    options.lookahead = lookahead;
    auto pool = WorkerPool::Create(FakeFactory(), options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    const auto start = std::chrono::steady_clock::now();
    Collected r = RunAll(
        **pool, Jobs({"sleep:100", "sleep:100", "sleep:100", "sleep:100"}));
    EXPECT_EQ(r.results.size(), 4u);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start)
        .count();
  };
  EXPECT_GE(timed(1), 0.39);
  EXPECT_LT(timed(64), 0.39);
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
  const auto start = std::chrono::steady_clock::now();
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
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  for (pid_t pid : pids) EXPECT_TRUE(Gone(pid)) << pid;
  EXPECT_LT(seconds, 3.0);
}

TEST(WorkerPoolTest, WorkersDieWithTheirParent) {
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  const pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    WorkerPoolOptions options;
    options.workers = 2;
    auto pool = WorkerPool::Create(FakeFactory(), options);
    if (!pool.ok()) _exit(1);
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
  // The workers were children of `middle`; once it died they were
  // re-parented and killed by PR_SET_PDEATHSIG.
  for (pid_t pid : pids) {
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = Gone(pid);
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(gone) << pid;
  }
}

// --- the tracing handler, real workers, real sandboxed loads ---------------

std::string InputDir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/worker_pool";
}

std::vector<std::string> InputFiles() {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(InputDir(), ec)) {
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class TraceWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const sandbox::SandboxSupport support = sandbox::ProbeSandboxSupport();
    if (!support.root || !support.user_notification || !support.pidfd) {
      GTEST_SKIP() << "the sandbox needs root, seccomp user notification "
                      "and pidfds";
    }
    files_ = InputFiles();
    ASSERT_GE(files_.size(), 8u)
        << "run the worker_pool_inputs fixture (ctest) first: " << InputDir();
  }

  // Traces `paths` with `workers` workers; returns the parsed traces.
  std::vector<absl::StatusOr<proto::Trace>> TraceAll(
      const std::vector<std::string>& paths, int workers,
      WorkerPoolStats* stats = nullptr) {
    WorkerPoolOptions options;
    options.workers = workers;
    auto pool = WorkerPool::Create(TraceWorkerFactory({}), options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    std::vector<absl::StatusOr<proto::Trace>> out;
    if (!pool.ok()) return out;
    std::vector<WorkerJob> jobs;
    for (const auto& p : paths) jobs.push_back({p, TraceNeeds(p, {})});
    absl::Status s =
        (*pool)->Run(jobs, [&](size_t, absl::StatusOr<std::string> reply) {
          if (!reply.ok()) {
            out.push_back(reply.status());
            return;
          }
          proto::Trace trace;
          if (!trace.ParseFromString(*reply)) {
            out.push_back(absl::InternalError("unparseable"));
            return;
          }
          out.push_back(std::move(trace));
        });
    EXPECT_TRUE(s.ok()) << s;
    if (stats) *stats = (*pool)->stats();
    return out;
  }

  std::vector<std::string> files_;
};

TEST_F(TraceWorkerTest, NeedsFollowTheFormat) {
  for (const std::string& path : files_) {
    const std::string name = std::filesystem::path(path).filename();
    const std::vector<std::string> needs = TraceNeeds(path, {});
    if (name.ends_with(".pt")) {
      EXPECT_EQ(needs, std::vector<std::string>{"torch"}) << name;
      // Classified by magic bytes when too big to analyse twice.
      EXPECT_EQ(TraceNeeds(path, {}, {}, 0), std::vector<std::string>{"torch"})
          << name;
    } else if (name.ends_with(".npy")) {
      EXPECT_EQ(needs, std::vector<std::string>{"numpy"}) << name;
    } else if (name.ends_with(".joblib")) {
      EXPECT_EQ(needs, (std::vector<std::string>{"joblib", "numpy"})) << name;
    } else if (name.ends_with(".pkl")) {
      EXPECT_TRUE(needs.empty()) << name;
    }
  }
  EXPECT_TRUE(TraceNeeds(InputDir() + "/missing.pt", {}).empty());
  TraceOptions forced;
  forced.load.loader = "torch.load";
  EXPECT_EQ(TraceNeeds(files_[0], forced, {}, 0),
            std::vector<std::string>{"torch"});
}

TEST_F(TraceWorkerTest, TracesInInputOrderLikeOneWorker) {
  std::vector<std::string> paths = files_;
  paths.insert(paths.begin() + 3, InputDir() + "/does-not-exist.pt");
  WorkerPoolStats stats;
  const auto two = TraceAll(paths, 2, &stats);
  const auto one = TraceAll(paths, 1);
  ASSERT_EQ(two.size(), paths.size());
  ASSERT_EQ(one.size(), paths.size());
  EXPECT_EQ(stats.jobs_per_worker.size(), 2u);
  EXPECT_GT(stats.jobs_per_worker[0], 0u);
  EXPECT_GT(stats.jobs_per_worker[1], 0u);
  for (size_t i = 0; i < paths.size(); ++i) {
    if (i == 3) {
      ASSERT_FALSE(two[i].ok());
      EXPECT_THAT(std::string(two[i].status().message()),
                  HasSubstr("does-not-exist.pt"));
      EXPECT_EQ(two[i].status(), one[i].status());
      continue;
    }
    ASSERT_TRUE(two[i].ok()) << paths[i] << ": " << two[i].status();
    ASSERT_TRUE(one[i].ok()) << paths[i] << ": " << one[i].status();
    const proto::Trace& t = *two[i];
    EXPECT_EQ(t.file().path(), paths[i]);
    EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << paths[i];
    EXPECT_FALSE(t.loaded_type().empty()) << paths[i];
    // Same file, same load, whichever worker ran it.
    EXPECT_EQ(t.file().sha256(), one[i]->file().sha256());
    EXPECT_EQ(t.loader(), one[i]->loader());
    EXPECT_EQ(t.loaded_type(), one[i]->loaded_type());
    EXPECT_EQ(t.root().format(), one[i]->root().format());
    std::multiset<std::string> g2, g1;
    for (const auto& e : t.events()) {
      if (e.kind() == proto::Event::GLOBAL) g2.insert(e.name());
    }
    for (const auto& e : one[i]->events()) {
      if (e.kind() == proto::Event::GLOBAL) g1.insert(e.name());
    }
    EXPECT_EQ(g2, g1) << paths[i];
  }
}

TEST_F(TraceWorkerTest, TorchFilesGatherOnOneWorker) {
  WorkerPoolStats stats;
  const auto traces = TraceAll(files_, 2, &stats);
  ASSERT_EQ(traces.size(), files_.size());
  for (const auto& t : traces) ASSERT_TRUE(t.ok()) << t.status();
  // After each worker's first job, most jobs land on a worker that already
  // has what they need.
  EXPECT_GE(stats.affinity_hits, files_.size() / 2);
}

// AnonHugePages of `pid`, bytes (-1 when unreadable).
int64_t AnonHugeBytes(pid_t pid) {
  std::ifstream rollup(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  for (std::string line; std::getline(rollup, line);) {
    unsigned long kib = 0;
    if (std::sscanf(line.c_str(), "AnonHugePages: %lu kB", &kib) == 1) {
      return static_cast<int64_t>(kib) << 10;
    }
  }
  return -1;
}

TEST_F(TraceWorkerTest, ZygoteMemoryIsCompactedForCheaperForks) {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(thp, mode);
  if (mode.find("[never]") != std::string::npos || mode.empty()) {
    GTEST_SKIP() << "transparent huge pages are off: " << mode;
  }
  std::string torch_file;
  for (const auto& f : files_) {
    if (f.ends_with(".pt")) torch_file = f;
  }
  ASSERT_FALSE(torch_file.empty());
  for (uint32_t every : {0u, 64u}) {
    WorkerPoolOptions options;
    options.workers = 1;
    TraceWorkerOptions worker_options;
    worker_options.compact_every = every;
    auto pool =
        WorkerPool::Create(TraceWorkerFactory({}, {}, worker_options), options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    std::vector<WorkerJob> jobs = {{torch_file, {}}, {torch_file, {}}};
    absl::Status s =
        (*pool)->Run(jobs, [&](size_t, absl::StatusOr<std::string> reply) {
          EXPECT_TRUE(reply.ok()) << reply.status();
        });
    ASSERT_TRUE(s.ok()) << s;
    const int64_t huge = AnonHugeBytes((*pool)->worker_pids()[0]);
    if (every > 0) {
      // torch's heap alone is tens of MiB.
      EXPECT_GE(huge, int64_t{8} << 20) << "compact_every " << every;
    } else if (mode.find("[madvise]") != std::string::npos) {
      EXPECT_LT(huge, int64_t{8} << 20) << "nothing asked for huge pages";
    }
  }
}

// Event kinds and syscall names of a trace (what a zygote's import history
// changes).
std::multiset<std::string> Shape(const proto::Trace& t) {
  std::multiset<std::string> shape;
  for (const auto& e : t.events()) {
    if (e.kind() == proto::Event::LOG) continue;  // carries load_ms
    shape.insert(proto::Event::Kind_Name(e.kind()) + " " + e.name());
  }
  for (const auto& c : t.syscalls()) {
    shape.insert("syscall " + c.name() + " " + std::to_string(c.count()));
  }
  return shape;
}

TEST_F(TraceWorkerTest, PrewarmedZygotesTraceAlikeWhateverCameBefore) {
  std::string torch_file, npy_file;
  for (const auto& f : files_) {
    if (f.ends_with(".pt")) torch_file = f;
    if (f.ends_with(".npy")) npy_file = f;
  }
  ASSERT_FALSE(torch_file.empty());
  ASSERT_FALSE(npy_file.empty());
  // The npy trace, first in a fresh worker and after a torch file.
  auto trace_npy = [&](bool prewarm, bool torch_first) {
    WorkerPoolOptions options;
    options.workers = 1;
    TraceWorkerOptions worker_options;
    worker_options.prewarm = prewarm;
    auto pool =
        WorkerPool::Create(TraceWorkerFactory({}, {}, worker_options), options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    std::vector<WorkerJob> jobs;
    if (torch_first) jobs.push_back({torch_file, {}});
    jobs.push_back({npy_file, {}});
    proto::Trace last;
    absl::Status s =
        (*pool)->Run(jobs, [&](size_t, absl::StatusOr<std::string> reply) {
          ASSERT_TRUE(reply.ok()) << reply.status();
          ASSERT_TRUE(last.ParseFromString(*reply));
        });
    EXPECT_TRUE(s.ok()) << s;
    return last;
  };
  const proto::Trace cold = trace_npy(false, false);
  const proto::Trace after_torch = trace_npy(false, true);
  const proto::Trace warm_cold = trace_npy(true, false);
  const proto::Trace warm_after_torch = trace_npy(true, true);
  // Lazily warmed zygotes differ (this is what prewarm is for; if this
  // stops holding, the lazy path became deterministic and the option may
  // go).
  EXPECT_NE(Shape(cold), Shape(after_torch));
  EXPECT_EQ(Shape(warm_cold), Shape(warm_after_torch));
  EXPECT_EQ(warm_cold.loaded_type(), cold.loaded_type());
}

}  // namespace
}  // namespace dynahug::runtime
