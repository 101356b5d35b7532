// `dynahug scan` end to end with the shipped default model bundle: verdicts,
// exit codes, the JSON and SARIF schemas, skipped formats, Hugging Face
// cache naming, bad inputs and bad bundles. scan_corpus_test.cc checks
// detection on the generated corpora.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Struct;
using google::protobuf::Value;

std::string DataDir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration";
}

// The first file (in name order) of a corpus folder.
std::string FirstFile(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files.empty() ? "" : files.front();
}

std::string Safetensors() {
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string out(8, '\0');
  out[0] = static_cast<char>(header.size());
  return out + header + std::string(8, '\0');
}

class ScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/dynahug-scan-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    benign_ = std::string(DYNAHUG_SOURCE_DIR) + "/examples/tiny_mlp_state_dict.pt";
    malicious_ = FirstFile(DataDir() + "/malicious/malicious/os-system");
    ASSERT_FALSE(malicious_.empty()) << "integ_malicious fixture missing";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& content) {
    fs::create_directories(fs::path(dir_ + "/" + rel).parent_path());
    std::ofstream(dir_ + "/" + rel, std::ios::binary) << content;
  }
  void Copy(const std::string& from, const std::string& rel) {
    fs::create_directories(fs::path(dir_ + "/" + rel).parent_path());
    fs::copy_file(from, dir_ + "/" + rel);
  }

  CommandResult Scan(std::vector<std::string> args) {
    std::vector<std::string> argv = {DYNAHUG_BIN, "scan"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> run = RunCommand(argv);
    EXPECT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->signal, 0) << run->err;
    return *run;
  }

  // path -> result object of a JSON report.
  std::map<std::string, Struct> Results(const CommandResult& run,
                                        Struct* summary = nullptr) {
    absl::StatusOr<Struct> doc = ParseJsonObject(run.out);
    EXPECT_TRUE(doc.ok()) << doc.status() << "\n" << run.out << run.err;
    std::map<std::string, Struct> out;
    if (!doc.ok()) return out;
    for (const Value& v : doc->fields().at("results").list_value().values()) {
      out[v.struct_value().fields().at("path").string_value()] =
          v.struct_value();
    }
    if (summary) *summary = doc->fields().at("summary").struct_value();
    return out;
  }

  std::string dir_, benign_, malicious_;
};

std::string Str(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

TEST_F(ScanTest, MixedDirectoryGetsOneVerdictPerFileAndExitCode1) {
  Copy(benign_, "model/pytorch_model.bin");
  Copy(malicious_, "model/extra.pkl");
  Write("model/config.json", "{\"hidden_size\": 16}\n");
  Write("model/README.md", "# tiny model\n");
  Write("model/model.safetensors", Safetensors());
  CommandResult run = Scan({dir_, "--format", "json"});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  Struct summary;
  std::map<std::string, Struct> results = Results(run, &summary);
  ASSERT_EQ(results.size(), 5u) << run.out;
  const Struct& bad = results[dir_ + "/model/extra.pkl"];
  EXPECT_EQ(Str(bad, "verdict"), "malicious") << run.out;
  EXPECT_GT(bad.fields().at("capabilities").list_value().values_size(), 0);
  EXPECT_GT(bad.fields().at("reasons").list_value().values_size(), 0);
  EXPECT_GT(bad.fields().at("score").number_value(),
            bad.fields().at("threshold").number_value());
  EXPECT_FALSE(Str(bad, "cluster").empty());
  EXPECT_FALSE(Str(bad, "format").empty());
  const Struct& good = results[dir_ + "/model/pytorch_model.bin"];
  EXPECT_EQ(Str(good, "verdict"), "benign") << run.out;
  EXPECT_EQ(Str(good, "format"), "TORCH_ZIP");
  EXPECT_LE(good.fields().at("score").number_value(),
            good.fields().at("threshold").number_value());
  for (const char* skipped : {"config.json", "README.md", "model.safetensors"}) {
    const Struct& s = results[dir_ + "/model/" + skipped];
    EXPECT_EQ(Str(s, "verdict"), "skipped") << skipped;
    EXPECT_FALSE(Str(s, "skip_reason").empty()) << skipped;
  }
  EXPECT_TRUE(absl::StartsWith(
      Str(results[dir_ + "/model/model.safetensors"], "skip_reason"),
      "safetensors (1 tensors, header valid)"));
  EXPECT_EQ(summary.fields().at("malicious").number_value(), 1);
  EXPECT_EQ(summary.fields().at("benign").number_value(), 1);
  EXPECT_EQ(summary.fields().at("skipped").number_value(), 3);
  EXPECT_EQ(summary.fields().at("errors").number_value(), 0);
}

TEST_F(ScanTest, BenignOnlyExits0WithOneTextLinePerFileAndASummary) {
  Copy(benign_, "a.pt");
  Write("notes.txt", "hello\n");
  CommandResult run = Scan({dir_});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("BENIGN    " + dir_ + "/a.pt"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("SKIPPED   " + dir_ + "/notes.txt"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("2 files: 0 malicious, 1 benign, 0 errors, 1 skipped"),
            std::string::npos)
      << run.out;
}

TEST_F(ScanTest, SarifReportsTheMaliciousFile) {
  Copy(malicious_, "x.bin");
  CommandResult run = Scan({dir_, "--format", "sarif"});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  absl::StatusOr<Struct> doc = ParseJsonObject(run.out);
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(doc->fields().at("version").string_value(), "2.1.0");
  const auto& runs = doc->fields().at("runs").list_value();
  ASSERT_EQ(runs.values_size(), 1);
  const auto& results =
      runs.values(0).struct_value().fields().at("results").list_value();
  ASSERT_EQ(results.values_size(), 1);
  const Struct& r = results.values(0).struct_value();
  EXPECT_EQ(Str(r, "ruleId"), "DH001");
  EXPECT_EQ(Str(r, "level"), "error");
  const std::string uri = r.fields()
                              .at("locations").list_value().values(0)
                              .struct_value().fields().at("physicalLocation")
                              .struct_value().fields().at("artifactLocation")
                              .struct_value().fields().at("uri").string_value();
  EXPECT_EQ(uri, dir_ + "/x.bin");
}

TEST_F(ScanTest, HuggingFaceCacheNamesRepoRevisionFileAndAnalysesABlobOnce) {
  const std::string repo = "hub/models--acme--tiny";
  Copy(benign_, repo + "/blobs/1111");
  Write(repo + "/blobs/2222", "{\"model_type\": \"mlp\"}");
  Write(repo + "/refs/main", "aaaa");
  for (const char* rev : {"aaaa", "bbbb"}) {
    const std::string snap = dir_ + "/" + repo + "/snapshots/" + rev;
    fs::create_directories(snap);
    fs::create_symlink("../../blobs/1111", snap + "/pytorch_model.bin");
    fs::create_symlink("../../blobs/2222", snap + "/config.json");
  }
  // A link out of the scanned tree is reported, never followed.
  fs::create_symlink(benign_, dir_ + "/" + repo + "/snapshots/aaaa/escape.bin");
  CommandResult run = Scan({dir_ + "/hub", "--format", "json"});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  std::map<std::string, Struct> results = Results(run);
  ASSERT_EQ(results.size(), 5u) << run.out;
  for (const char* rev : {"aaaa", "bbbb"}) {
    const Struct& r =
        results[dir_ + "/" + repo + "/snapshots/" + rev + "/pytorch_model.bin"];
    EXPECT_EQ(Str(r, "verdict"), "benign") << run.out;
    const Struct& hub = r.fields().at("hub").struct_value();
    EXPECT_EQ(Str(hub, "repo"), "acme/tiny");
    EXPECT_EQ(Str(hub, "revision"), rev);
    EXPECT_EQ(Str(hub, "file"), "pytorch_model.bin");
  }
  const Struct& escape =
      results[dir_ + "/" + repo + "/snapshots/aaaa/escape.bin"];
  EXPECT_EQ(Str(escape, "verdict"), "skipped");
  EXPECT_NE(Str(escape, "skip_reason").find("outside the scanned tree"),
            std::string::npos);
}

TEST_F(ScanTest, BrokenInputIsAnErrorAndTheScanGoesOn) {
  // A zip whose only member cannot be read: nothing loadable.
  Write("a-truncated.pkl", "PK\x03\x04garbagegarbage");
  Copy(benign_, "b.pt");
  Write("c.safetensors", std::string("\x40\x00\x00\x00\x00\x00\x00\x00{", 9) +
                             std::string(63, ' '));
  CommandResult run = Scan({dir_, "--format", "json", dir_ + "/missing.pt"});
  EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
  std::map<std::string, Struct> results = Results(run);
  ASSERT_EQ(results.size(), 4u) << run.out;
  EXPECT_EQ(Str(results[dir_ + "/a-truncated.pkl"], "verdict"), "error");
  EXPECT_FALSE(Str(results[dir_ + "/a-truncated.pkl"], "error").empty());
  EXPECT_EQ(Str(results[dir_ + "/b.pt"], "verdict"), "benign");
  EXPECT_EQ(Str(results[dir_ + "/c.safetensors"], "verdict"), "error");
  EXPECT_EQ(Str(results[dir_ + "/missing.pt"], "verdict"), "error");
}

TEST_F(ScanTest, StrictRefusesWhatItCannotVouchFor) {
  Write("tokenizer.model", std::string("\x0a\x05\x00\xff\x01", 5));
  EXPECT_EQ(Scan({dir_}).exit_code, 0);
  CommandResult strict = Scan({dir_, "--strict", "--format", "json"});
  EXPECT_EQ(strict.exit_code, 2) << strict.out;
  std::map<std::string, Struct> results = Results(strict);
  EXPECT_EQ(Str(results[dir_ + "/tokenizer.model"], "verdict"), "error");
}

TEST_F(ScanTest, BadModelBundlesAreClearErrorsNamingTheFile) {
  Copy(benign_, "a.pt");
  Write("empty.dhm", "");
  Write("garbage.dhm", std::string(4096, '\x17'));
  for (const std::string& model :
       {dir_ + "/missing.dhm", dir_ + "/empty.dhm", dir_ + "/garbage.dhm"}) {
    SCOPED_TRACE(model);
    CommandResult run = Scan({dir_ + "/a.pt", "--model", model});
    EXPECT_EQ(run.exit_code, 2);
    EXPECT_NE(run.err.find(model), std::string::npos) << run.err;
    EXPECT_EQ(run.out, "");
  }
}

TEST_F(ScanTest, UsageErrorsExit2) {
  EXPECT_EQ(Scan({}).exit_code, 2);
  EXPECT_EQ(Scan({dir_, "--format", "xml"}).exit_code, 2);
  EXPECT_EQ(Scan({dir_, "--jobs", "0"}).exit_code, 2);
}

}  // namespace
}  // namespace dynahug::integration
