// Negative control of the evidence rules (evidence_rules.h): every file of the
// small benign corpus (fixture `integ_benign`) is traced in ONE `dynahug
// trace` invocation, and no rule finds evidence of any effect in any of
// them. The malicious-corpus test shows the rules see what payloads attempt;
// this test shows that what they see is not what ordinary models and their
// libraries do while loading (imports that probe sockets, temporary
// directories, C extensions registering submodules).
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/evidence_rules.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

std::string CorpusDir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration/benign";
}

std::vector<std::string> BenignPaths(const google::protobuf::Struct& manifest) {
  std::vector<std::string> out;
  for (const auto& v : manifest.fields().at("files").list_value().values()) {
    const auto& f = v.struct_value().fields();
    if (f.at("label").string_value() != "benign") continue;
    out.push_back(f.at("path").string_value());
  }
  return out;
}

TEST(BenignEvidenceTest, NoEvidenceRuleFiresOnTheBenignCorpus) {
  absl::StatusOr<std::string> manifest_text =
      ReadFileToString(CorpusDir() + "/manifest.json");
  ASSERT_TRUE(manifest_text.ok())
      << manifest_text.status() << " (did fixture integ_benign run?)";
  absl::StatusOr<google::protobuf::Struct> manifest =
      ParseJsonObject(*manifest_text);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const std::vector<std::string> paths = BenignPaths(*manifest);
  ASSERT_GE(paths.size(), 100u) << "small benign corpus looks truncated";

  std::vector<std::string> argv = {DYNAHUG_BIN, "trace", "--format", "json"};
  for (const std::string& p : paths) argv.push_back(CorpusDir() + "/" + p);
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->signal, 0) << run->err;
  ASSERT_EQ(run->exit_code, 0) << run->err.substr(0, 4000);
  absl::StatusOr<std::vector<proto::Trace>> traces =
      ParseTraceDocument(run->out);
  ASSERT_TRUE(traces.ok()) << traces.status();
  ASSERT_EQ(traces->size(), paths.size()) << run->err.substr(0, 4000);

  std::map<std::string, int> fired;  // effect -> benign files
  size_t payload_calls = 0;
  for (const proto::Trace& trace : *traces) {
    // The attribution must have something to work on: benign pickles make
    // calls too (OrderedDict, tensor rebuilds), recorded with their offsets.
    const std::vector<bool> caused = PayloadCausedEvents(trace);
    for (int i = 0; i < trace.events_size(); ++i) {
      if (caused[i] && trace.events(i).kind() == proto::Event::PICKLE_CALL) {
        ++payload_calls;
      }
    }
    for (const std::string& effect : EvidenceEffects()) {
      const std::vector<int> hits = FindEvidence(trace, effect);
      if (hits.empty()) continue;
      ++fired[effect];
      std::string shown;
      for (size_t k = 0; k < hits.size() && k < 8; ++k) {
        absl::StrAppend(&shown, "    ", DescribeEvent(trace.events(hits[k])),
                        "\n");
      }
      ADD_FAILURE() << trace.file().path() << ": rule '" << effect
                    << "' fires on a benign file (" << hits.size()
                    << " event(s)):\n"
                    << shown;
    }
  }
  EXPECT_GT(payload_calls, paths.size())
      << "almost no pickle calls were attributed to the benign pickles: "
         "offsets missing from the trace? (the control would be vacuous)";
  for (const std::string& effect : EvidenceEffects()) {
    std::printf("[ INFO ] %-11s fires on %d of %zu benign files\n",
                effect.c_str(), fired[effect], paths.size());
  }
}

}  // namespace
}  // namespace dynahug::integration
