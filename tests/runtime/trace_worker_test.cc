// Tests of runtime/trace/trace_worker: the tracing handler on real worker
// processes (sandbox/worker_pool) with real sandboxed loads of small benign
// files (CTest fixture worker_pool_inputs).
#include "runtime/trace/trace_worker.h"

#include <sys/types.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox/child_launcher.h"

namespace dynahug::runtime {
namespace {

using sandbox::WorkerJob;
using sandbox::WorkerPool;
using sandbox::WorkerPoolOptions;
using sandbox::WorkerPoolStats;
using ::testing::HasSubstr;

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
    // Lazily warmed: these tests are about per-file imports (TraceNeeds).
    TraceWorkerOptions worker_options;
    worker_options.prewarm = false;
    auto pool = WorkerPool::Create(TraceWorkerFactory({}, {}, worker_options),
                                   options);
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
    EXPECT_EQ(t.file().content_key(), one[i]->file().content_key());
    EXPECT_EQ(t.file().content_key().size(), 64u);
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
    worker_options.prewarm = false;  // compaction after a lazy import
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

TEST(TraceWorkerOptionsTest, WorkersArePrewarmedByDefault) {
  EXPECT_TRUE(TraceWorkerOptions{}.prewarm);
}

}  // namespace
}  // namespace dynahug::runtime
