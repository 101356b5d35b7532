// torch legacy (non-zip) checkpoints keep their storages inline after the
// pickles (issue 10): the sandboxed torch.load neither allocates nor reads a
// storage above the lazy threshold (LoadOptions::lazy_storage_bytes, 1 MiB
// by default), and whatever the storage region holds, every pickle still
// runs. Real sandboxed loads with `dynahug trace` on the inputs of
// gen_legacy_inputs.py (fixture integ_legacy). The probe in every malicious
// input is posix.system('/bin/true'): its AUDIT os.system event is the
// evidence that the payload ran.
//
//   - a torch.save'd legacy file: the 24 MiB storage is meta (persistent_load
//     marked lazy), the small one is read; the child's peak RSS does not grow
//     with the storage (a 256 MiB storage costs what the 24 MiB one does);
//   - storage bytes cut short or replaced by garbage, small (read by torch)
//     or big (skipped): the probe first in the object pickle still runs, and
//     the load fails with torch's own error;
//   - a pickle appended after the last storage record does not run (torch
//     reads nothing there);
//   - a declared 3 GiB storage (no bytes) and a probe after it, in the
//     object pickle or in the storage-key pickle: the probe runs (reading or
//     allocating the storage would end the load at the child's address-space
//     limit before it), the load then fails as torch's would (short file).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

std::string Dir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration/legacy";
}

// All `names` traced in one invocation, in order.
std::vector<proto::Trace> Trace(const std::vector<std::string>& names) {
  std::vector<std::string> files;
  for (const std::string& n : names) files.push_back(Dir() + "/" + n);
  absl::StatusOr<TraceRun> run = TraceFiles(DYNAHUG_BIN, {}, files);
  EXPECT_TRUE(run.ok()) << run.status();
  return run.ok() ? run->traces : std::vector<proto::Trace>();
}

struct Storages {
  int lazy = 0;  // persistent_load events marked lazy=meta
  int read = 0;  // the others
  std::vector<std::string> lazy_numels;
};

Storages PersistentLoads(const proto::Trace& trace) {
  Storages s;
  for (const auto& e : trace.events()) {
    if (e.kind() != proto::Event::PICKLE_CALL ||
        e.name() != "persistent_load") {
      continue;
    }
    if (ArgValue(e, "lazy") == "meta") {
      ++s.lazy;
      s.lazy_numels.push_back(ArgValue(e, "4"));
    } else {
      ++s.read;
    }
  }
  return s;
}

// Index of the first AUDIT os.system event (the probe), or -1.
int ProbeIndex(const proto::Trace& trace) {
  for (int i = 0; i < trace.events_size(); ++i) {
    const proto::Event& e = trace.events(i);
    if (e.kind() == proto::Event::AUDIT && e.name() == "os.system") return i;
  }
  return -1;
}

int FirstPersistentLoad(const proto::Trace& trace) {
  for (int i = 0; i < trace.events_size(); ++i) {
    const proto::Event& e = trace.events(i);
    if (e.kind() == proto::Event::PICKLE_CALL &&
        e.name() == "persistent_load") {
      return i;
    }
  }
  return -1;
}

TEST(LegacyCheckpointTest, BigStorageIsMetaAndMemoryDoesNotGrowWithIt) {
  const std::vector<proto::Trace> t =
      Trace({"saved-24mib.pt", "sparse-256mib.pt"});
  ASSERT_EQ(t.size(), 2u);
  for (const proto::Trace& trace : t) {
    SCOPED_TRACE(trace.file().path());
    EXPECT_EQ(trace.exit().status(), proto::ChildExit::OK)
        << trace.exit().reason() << "\n"
        << DescribeEvents(trace);
    EXPECT_EQ(trace.loader(), "torch.load");
    EXPECT_EQ(trace.loaded_type(), "builtins.dict");
  }
  // torch.save's file: the 24 MiB storage is meta, the 80-byte one read.
  const Storages saved = PersistentLoads(t[0]);
  EXPECT_EQ(saved.lazy, 1) << DescribeEvents(t[0]);
  EXPECT_EQ(saved.read, 1) << DescribeEvents(t[0]);
  EXPECT_EQ(saved.lazy_numels, std::vector<std::string>{"6291456"});
  const Storages sparse = PersistentLoads(t[1]);
  EXPECT_EQ(sparse.lazy, 1) << DescribeEvents(t[1]);
  EXPECT_EQ(sparse.lazy_numels, std::vector<std::string>{"67108864"});
  // Reading the 256 MiB storage would add 256 MiB to the peak RSS (and the
  // 24 MiB one 24 MiB to the other's): both cost the same, within noise.
  const double rss_24 = t[0].exit().max_rss_kib() / 1024.0;
  const double rss_256 = t[1].exit().max_rss_kib() / 1024.0;
  std::printf(
      "[ INFO ] child peak RSS: 24 MiB storage %.1f MiB, 256 MiB "
      "storage %.1f MiB\n",
      rss_24, rss_256);
  EXPECT_GT(rss_24, 0);
  EXPECT_LT(rss_256, rss_24 + 32) << "the 256 MiB storage was materialised";
}

TEST(LegacyCheckpointTest, CutOrGarbageStoragesStillShowThePickle) {
  struct Case {
    const char* name;
    int lazy;
    const char* error;  // start of torch's error message
  };
  const std::vector<Case> cases = {
      {"truncated-small.pt", 0, "unexpected EOF, expected 54 more bytes"},
      {"truncated-big.pt", 1, "unexpected EOF, expected 33553432 more bytes"},
      {"garbage-big.pt", 1, "storage has wrong byte size"},
  };
  std::vector<std::string> names;
  for (const Case& c : cases) names.push_back(c.name);
  const std::vector<proto::Trace> t = Trace(names);
  ASSERT_EQ(t.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const proto::Trace& trace = t[i];
    SCOPED_TRACE(c.name);
    EXPECT_EQ(trace.loader(), "torch.load");
    EXPECT_GE(ProbeIndex(trace), 0) << "the probe did not run\n"
                                    << DescribeEvents(trace);
    const Storages s = PersistentLoads(trace);
    EXPECT_EQ(s.lazy, c.lazy) << DescribeEvents(trace);
    EXPECT_EQ(s.lazy + s.read, 1) << DescribeEvents(trace);
    EXPECT_EQ(trace.exit().status(), proto::ChildExit::LOAD_FAILED)
        << trace.exit().reason();
    const proto::Event* result = LoadResultEvent(trace);
    ASSERT_NE(result, nullptr) << DescribeEvents(trace);
    EXPECT_EQ(ArgValue(*result, "error_type"), "builtins.RuntimeError");
    EXPECT_TRUE(absl::StartsWith(ArgValue(*result, "error"), c.error))
        << ArgValue(*result, "error");
  }
}

// torch's legacy loader reads nothing after the last storage record: a
// pickle appended there never runs in the victim's process, nor here.
TEST(LegacyCheckpointTest, NothingAfterTheLastStorageRuns) {
  const std::vector<proto::Trace> t = Trace({"trailing-probe.pt"});
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].exit().status(), proto::ChildExit::OK)
      << t[0].exit().reason() << "\n"
      << DescribeEvents(t[0]);
  EXPECT_EQ(t[0].loader(), "torch.load");
  EXPECT_EQ(t[0].loaded_type(), "builtins.list");
  EXPECT_EQ(PersistentLoads(t[0]).read, 1);
  EXPECT_EQ(ProbeIndex(t[0]), -1) << DescribeEvents(t[0]);
}

TEST(LegacyCheckpointTest, PayloadAfterAHugeDeclaredStorageRuns) {
  const std::vector<proto::Trace> t =
      Trace({"huge-then-probe.pt", "huge-keys-probe.pt"});
  ASSERT_EQ(t.size(), 2u);
  for (const proto::Trace& trace : t) {
    SCOPED_TRACE(trace.file().path());
    // The 3 GiB storage (805306368 floats) is meta...
    const Storages s = PersistentLoads(trace);
    EXPECT_EQ(s.lazy_numels, std::vector<std::string>{"805306368"})
        << DescribeEvents(trace);
    // ... and the probe after it ran: in the object pickle after the
    // persistent id, or in the storage-key pickle.
    const int probe = ProbeIndex(trace);
    EXPECT_GE(probe, 0) << "the probe did not run\n" << DescribeEvents(trace);
    EXPECT_GT(probe, FirstPersistentLoad(trace));
    // No storage bytes: torch's read of the first record fails, as it would
    // in a victim's process with the memory for the storage.
    EXPECT_EQ(trace.exit().status(), proto::ChildExit::LOAD_FAILED)
        << trace.exit().reason();
    const proto::Event* result = LoadResultEvent(trace);
    ASSERT_NE(result, nullptr) << DescribeEvents(trace);
    EXPECT_EQ(ArgValue(*result, "error_type"), "builtins.RuntimeError")
        << ArgValue(*result, "error");
    EXPECT_TRUE(absl::StartsWith(ArgValue(*result, "error"),
                                 "unexpected EOF, expected 8 more bytes"))
        << ArgValue(*result, "error");
    EXPECT_LT(trace.exit().max_rss_kib(), 1024u * 1024u);
  }
  // The probe of the storage-key pickle sits in that pickle, after the
  // object's.
  EXPECT_GT(t[1].events(ProbeIndex(t[1])).pickle_offset(),
            t[1].events(FirstPersistentLoad(t[1])).pickle_offset());
}

}  // namespace
}  // namespace dynahug::integration
