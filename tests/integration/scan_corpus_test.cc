// `dynahug scan` with the shipped default bundle on a generated corpus, as a
// regression floor for the detector and the bundle (README.md has the
// held-out evaluation): every malicious file of the small corpus (every
// technique and container) is convicted; benign files stay under a
// false-positive ceiling. One binary per corpus (one CTest fixture each);
// SCAN_CORPUS_MALICIOUS selects the side.
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

std::string Str(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

TEST(ScanCorpusTest, DefaultModelOnTheGeneratedCorpus) {
  const bool want_malicious = SCAN_CORPUS_MALICIOUS;
  const std::string dir =
      std::string(DYNAHUG_TEST_DATA_DIR) +
      (want_malicious ? "/integration/malicious/malicious"
                      : "/integration/benign/benign");
  absl::StatusOr<CommandResult> run = RunCommand(
      {DYNAHUG_BIN, "scan", dir, "--format", "json", "--jobs", "2"});
  ASSERT_TRUE(run.ok()) << run.status();
  absl::StatusOr<Struct> doc = ParseJsonObject(run->out);
  ASSERT_TRUE(doc.ok()) << doc.status() << run->err;
  size_t analysed = 0, flagged = 0;
  std::string missed;
  for (const Value& v : doc->fields().at("results").list_value().values()) {
    const Struct& r = v.struct_value();
    const std::string verdict = Str(r, "verdict");
    if (verdict == "skipped") continue;
    ++analysed;
    const bool hit = verdict == "malicious";
    flagged += hit;
    if (hit != want_malicious && missed.size() < 4000) {
      missed += absl::StrCat(Str(r, "path"), ": ", verdict, " ",
                             Str(r, "error"), "\n");
    }
  }
  ASSERT_GT(analysed, 100u) << run->out.substr(0, 2000);
  if (want_malicious) {
    // An error verdict does not count: a malicious file must be convicted.
    EXPECT_GE(flagged * 1000, analysed * 995)
        << flagged << "/" << analysed << " convicted; missed:\n" << missed;
  } else {
    EXPECT_LE(flagged * 100, analysed * 2)
        << flagged << "/" << analysed << " false positives:\n" << missed;
  }
}

}  // namespace
}  // namespace dynahug::integration
