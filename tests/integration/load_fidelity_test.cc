// The sandbox loads what the victim would load (issue 9): real sandboxed
// loads with `dynahug trace` on the inputs of gen_fidelity_inputs.py
// (fixture integ_fidelity). The probe in every malicious input is
// posix.system('/bin/true'): its AUDIT os.system event is the evidence that
// the payload ran.
//
//   - torch zips whose data.pkl has the local flag bit 0x1, a bad CRC or a
//     local name that differs from the central one: torch.load loads them,
//     so the probe's events appear; with the bit in the central directory
//     torch itself refuses ("unsupported encryption") before unpickling, and
//     the trace says so (no "nothing loadable" from dynahug's reader); a
//     central name torch cannot find: torch.load runs on the file (it is
//     named .pt) and fails, the member is still loaded as unpacked.
//   - stacked pickles: the second stream's probe runs, its events marked
//     stream 1, the first stream's stream 0.
//   - a pickle-shaped file with a bad length: raw pickle, decode error,
//     static global builtins.exec, and pickle.load resolving it.
//   - a raw pickle named .pt: pickle.load and torch.load both run, each
//     event marked with its loader; the file counts as loaded.
//   - `scan` takes --loader/--as and refuses an unknown loader.
//   - torch's legacy layout whose probe sits after a persistent id: only
//     torch.load reaches it, and only a name brings torch.load in: --as on
//     trace, and in a Hugging Face cache the blob's snapshot name (a victim's
//     from_pretrained loads the blob as pytorch_model.bin).
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

std::string Dir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration/fidelity";
}

proto::Trace TraceOne(const std::string& name,
                      std::vector<std::string> extra = {}) {
  absl::StatusOr<TraceRun> run =
      TraceFiles(DYNAHUG_BIN, extra, {Dir() + "/" + name});
  EXPECT_TRUE(run.ok()) << name << ": " << run.status();
  return run.ok() ? run->traces[0] : proto::Trace();
}

// The probe's AUDIT os.system events.
std::vector<const proto::Event*> ProbeEvents(const proto::Trace& trace) {
  std::vector<const proto::Event*> out;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::AUDIT && e.name() == "os.system") {
      out.push_back(&e);
    }
  }
  return out;
}

TEST(LoadFidelityTest, OddTorchZipsTorchLoadsRunTheirPayload) {
  for (const char* name : {"zip-plain.pt", "zip-flag-local-enc.pt",
                           "zip-bad-crc.pt", "zip-local-name.pt"}) {
    SCOPED_TRACE(name);
    const proto::Trace trace = TraceOne(name);
    EXPECT_EQ(trace.root().format(), proto::TORCH_ZIP);
    EXPECT_EQ(trace.loader(), "torch.load");
    EXPECT_EQ(ProbeEvents(trace).size(), 1u) << DescribeEvents(trace);
    const proto::Event* result = LoadResultEvent(trace);
    ASSERT_NE(result, nullptr) << DescribeEvents(trace);
    EXPECT_EQ(ArgValue(*result, "loaded"), "true") << DescribeEvents(trace);
  }
}

TEST(LoadFidelityTest, CentralEncryptionFlagIsTorchsRefusalNotOurs) {
  const proto::Trace trace = TraceOne("zip-flag-central-enc.pt");
  EXPECT_EQ(trace.loader(), "torch.load");
  EXPECT_EQ(trace.exit().status(), proto::ChildExit::LOAD_FAILED);
  EXPECT_NE(trace.exit().reason().find("unsupported encryption"),
            std::string::npos)
      << trace.exit().reason();
  // torch refuses before unpickling: the payload never runs for a victim.
  EXPECT_TRUE(ProbeEvents(trace).empty()) << DescribeEvents(trace);
}

TEST(LoadFidelityTest, CentralNameTorchCannotFindStillRunsTorchLoad) {
  const proto::Trace trace = TraceOne("zip-central-name.pt");
  EXPECT_EQ(trace.root().format(), proto::ZIP);
  EXPECT_EQ(trace.loader(), "torch.load");
  const proto::Event* torch_result = LoadResultEvent(trace, "");
  ASSERT_NE(torch_result, nullptr) << DescribeEvents(trace);
  EXPECT_EQ(ArgValue(*torch_result, "loader"), "torch.load");
  EXPECT_NE(ArgValue(*torch_result, "error").find("file not found"),
            std::string::npos)
      << DescribeEvent(*torch_result);
  // The unpacked member is loaded too (pickle.load), payload included.
  EXPECT_EQ(ProbeEvents(trace).size(), 1u) << DescribeEvents(trace);
}

TEST(LoadFidelityTest, EveryStackedStreamRunsAndIsMarked) {
  const proto::Trace trace = TraceOne("stacked.pkl");
  EXPECT_EQ(trace.loader(), "pickle.load");
  const auto probes = ProbeEvents(trace);
  ASSERT_EQ(probes.size(), 1u) << DescribeEvents(trace);
  ASSERT_TRUE(probes[0]->has_stream());
  EXPECT_EQ(probes[0]->stream(), 1u);
  bool saw_stream0 = false, saw_summary = false;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::GLOBAL) {
      EXPECT_EQ(e.name(), "posix.system");
      EXPECT_EQ(e.stream(), 1u);
    }
    if (e.kind() == proto::Event::AUDIT && e.name() == "open") {
      EXPECT_EQ(e.stream(), 0u) << DescribeEvent(e);
      saw_stream0 = true;
    }
    if (e.kind() == proto::Event::LOG && e.name() == "dynahug.pickle_streams") {
      EXPECT_EQ(ArgValue(e, "streams"), "2");
      EXPECT_EQ(ArgValue(e, "stop"), "EOF");
      saw_summary = true;
    }
    EXPECT_NE(e.name(), "dynahug.pickle_stream") << "marks are consumed";
  }
  EXPECT_TRUE(saw_stream0) << DescribeEvents(trace);
  EXPECT_TRUE(saw_summary) << DescribeEvents(trace);
  // The first stream's object is what a single pickle.load returns.
  EXPECT_EQ(trace.loaded_type(), "builtins.dict");
  EXPECT_EQ(trace.exit().status(), proto::ChildExit::OK);
}

TEST(LoadFidelityTest, SingleStreamLoadsCarryNoStreamMarks) {
  const proto::Trace trace = TraceOne("zip-plain.pt");
  for (const auto& e : trace.events()) {
    EXPECT_FALSE(e.has_stream()) << DescribeEvent(e);
    EXPECT_TRUE(e.loader().empty()) << DescribeEvent(e);
  }
}

TEST(LoadFidelityTest, TrailingGarbageEndsTheLoopWithItsError) {
  const proto::Trace trace = TraceOne("trailing-garbage.pkl");
  EXPECT_EQ(trace.loaded_type(), "builtins.dict");
  EXPECT_EQ(trace.exit().status(), proto::ChildExit::OK);
  bool found = false;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::LOG && e.name() == "dynahug.pickle_streams") {
      // The pure-Python unpickler the sandbox instruments raises KeyError
      // for an unknown opcode where the C one raises UnpicklingError.
      const std::string stop = ArgValue(e, "stop");
      EXPECT_TRUE(stop.find("UnpicklingError") != std::string::npos ||
                  stop.find("KeyError") != std::string::npos)
          << DescribeEvent(e);
      found = true;
    }
  }
  EXPECT_TRUE(found) << DescribeEvents(trace);
}

TEST(LoadFidelityTest, PickleShapedBrokenFileIsRunByPickleLoad) {
  const proto::Trace trace = TraceOne("shaped.bin");
  EXPECT_EQ(trace.root().format(), proto::RAW_PICKLE);
  ASSERT_EQ(trace.root().pickles_size(), 1);
  const auto& summary = trace.root().pickles(0);
  EXPECT_FALSE(summary.complete());
  EXPECT_NE(summary.error().find("BINUNICODE"), std::string::npos)
      << summary.error();
  ASSERT_EQ(summary.globals_size(), 1);
  EXPECT_EQ(summary.globals(0).module(), "builtins");
  EXPECT_EQ(summary.globals(0).name(), "exec");
  // .bin: pickle.load and torch.load (whose legacy path unpickles it too).
  EXPECT_EQ(trace.loader(), "pickle.load,torch.load");
  int resolved = 0;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::GLOBAL && e.name() == "builtins.exec") {
      ++resolved;
      EXPECT_FALSE(e.loader().empty());
    }
  }
  EXPECT_EQ(resolved, 2) << DescribeEvents(trace);
  EXPECT_NE(trace.exit().status(), proto::ChildExit::OK);
}

TEST(LoadFidelityTest, RawPickleNamedPtGoesThroughBothLoaders) {
  const proto::Trace trace = TraceOne("raw-benign.pt");
  EXPECT_EQ(trace.loader(), "pickle.load,torch.load");
  EXPECT_EQ(trace.exit().status(), proto::ChildExit::OK)
      << trace.exit().reason();
  EXPECT_EQ(trace.loaded_type(), "builtins.dict");
  int results = 0;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::LOG && e.name() == "dynahug.load_result") {
      ++results;
      EXPECT_EQ(e.loader(), ArgValue(e, "loader"));
    }
  }
  EXPECT_EQ(results, 2) << DescribeEvents(trace);
  // --loader runs one loader; --as renames.
  EXPECT_EQ(TraceOne("raw-benign.pt", {"--loader", "pickle.load"}).loader(),
            "pickle.load");
  EXPECT_EQ(TraceOne("raw-benign.pt", {"--as", "model.pkl"}).loader(),
            "pickle.load");
  EXPECT_EQ(TraceOne("stacked.pkl", {"--as", ".pt"}).loader(),
            "pickle.load,torch.load");
}

TEST(LoadFidelityTest, ScanTakesLoaderAndAsAndKeepsTheVerdict) {
  for (const char* name :
       {"zip-flag-local-enc.pt", "zip-bad-crc.pt", "zip-local-name.pt"}) {
    absl::StatusOr<CommandResult> run = RunCommand(
        {DYNAHUG_BIN, "scan", "--format", "json", "--jobs", "1",
         Dir() + "/" + name});
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->exit_code, 1) << name << "\n" << run->out << run->err;
    EXPECT_NE(run->out.find("\"malicious\""), std::string::npos) << run->out;
  }
  absl::StatusOr<CommandResult> as = RunCommand(
      {DYNAHUG_BIN, "scan", "--format", "json", "--jobs", "1", "--loader",
       "pickle.load", "--as", ".pkl", Dir() + "/stacked.pkl"});
  ASSERT_TRUE(as.ok()) << as.status();
  EXPECT_EQ(as->exit_code, 1) << as->out << as->err;
  absl::StatusOr<CommandResult> bad = RunCommand(
      {DYNAHUG_BIN, "scan", "--loader", "evil.load", Dir() + "/stacked.pkl"});
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_EQ(bad->exit_code, 2);
  EXPECT_NE(bad->err.find("unknown loader 'evil.load'"), std::string::npos)
      << bad->err;
}

TEST(LoadFidelityTest, LegacyLayoutProbeRunsOnlyUnderATorchName) {
  // Control: by content alone it is a stack of raw pickles; the loop stops
  // at the persistent id, before the probe.
  const proto::Trace plain = TraceOne("persid-probe.raw");
  EXPECT_EQ(plain.loader(), "pickle.load");
  EXPECT_TRUE(ProbeEvents(plain).empty()) << DescribeEvents(plain);
  const proto::Trace named =
      TraceOne("persid-probe.raw", {"--as", "pytorch_model.bin"});
  EXPECT_EQ(named.loader(), "pickle.load,torch.load");
  const std::vector<const proto::Event*> probe = ProbeEvents(named);
  ASSERT_FALSE(probe.empty()) << DescribeEvents(named);
  for (const proto::Event* e : probe) EXPECT_EQ(e->loader(), "torch.load");
}

TEST(LoadFidelityTest, HubBlobIsLoadedUnderItsSnapshotName) {
  namespace fs = std::filesystem;
  char tmpl[] = "/var/tmp/dynahug-hub-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  const std::string repo = root + "/hub/models--acme--legacy";
  fs::create_directories(repo + "/blobs");
  fs::create_directories(repo + "/snapshots/aaaa");
  fs::copy_file(Dir() + "/persid-probe.raw", repo + "/blobs/3333");
  fs::create_symlink("../../blobs/3333",
                     repo + "/snapshots/aaaa/pytorch_model.bin");
  absl::StatusOr<CommandResult> run = RunCommand(
      {DYNAHUG_BIN, "scan", "--format", "json", "--jobs", "1", root + "/hub"});
  // By content alone (no name) the same blob is inconclusive, not convicted.
  absl::StatusOr<CommandResult> blob = RunCommand(
      {DYNAHUG_BIN, "scan", "--format", "json", "--jobs", "1",
       repo + "/blobs/3333"});
  fs::remove_all(root);
  ASSERT_TRUE(run.ok() && blob.ok());
  EXPECT_EQ(run->exit_code, 1) << run->out << run->err;
  EXPECT_NE(run->out.find("\"verdict\": \"malicious\""), std::string::npos)
      << run->out;
  EXPECT_NE(run->out.find("\"process\""), std::string::npos) << run->out;
  EXPECT_EQ(blob->out.find("\"verdict\": \"malicious\""), std::string::npos)
      << blob->out;
}

}  // namespace
}  // namespace dynahug::integration
