// dynahug::Scanner (runtime/scanner/scanner.h), the C++ API, end to end with
// the shipped default bundle: real sandboxed loads in its worker zygote, of
// the shipped examples and of pickles the test writes (harmless probes
// only: a marker under /tmp/dynahug_pwned/ that must never appear).
#include "runtime/scanner/scanner.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hooks/base/sha256.h"
#include "tests/security_test_util.h"

namespace dynahug {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool HasGlobal(const ScanOutcome& r, const std::string& module,
               const std::string& name) {
  return std::any_of(r.globals.begin(), r.globals.end(),
                     [&](const ResolvedGlobal& g) {
                       return g.module == module && g.name == name;
                     });
}

class ScannerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    // The defaults, as a program using the API gets them (prewarmed).
    absl::StatusOr<std::unique_ptr<Scanner>> s = Scanner::Create();
    ASSERT_TRUE(s.ok()) << s.status();
    scanner_ = s->release();
  }
  static void TearDownTestSuite() {
    delete scanner_;
    scanner_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) {
      DYNAHUG_SECURITY_SKIP("needs root (namespaces, seccomp supervision)");
    }
    ASSERT_NE(scanner_, nullptr);
  }
  static Scanner* scanner_;
};
Scanner* ScannerTest::scanner_ = nullptr;

TEST_F(ScannerTest, BenignTorchStateDictIsBenignWithItsGlobalsAndHash) {
  const std::string path =
      std::string(DYNAHUG_SOURCE_DIR) + "/examples/tiny_mlp_state_dict.pt";
  ScanOptions options;
  options.keep_trace = true;
  absl::StatusOr<ScanOutcome> r = scanner_->ScanPath(path, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->verdict.label(), proto::Verdict::BENIGN)
      << r->verdict.DebugString();
  EXPECT_EQ(r->loader, "torch.load");
  EXPECT_EQ(r->format, proto::TORCH_ZIP);
  // Its storages are not read: identified by content key, no whole-file
  // SHA-256 (ScannerOptions::full_hash is off).
  EXPECT_EQ(r->content_key.size(), 64u);
  EXPECT_TRUE(r->sha256.empty()) << r->sha256;
  EXPECT_TRUE(r->loaded) << r->load_error;
  EXPECT_TRUE(HasGlobal(*r, "torch._utils", "_rebuild_tensor_v2"));
  EXPECT_TRUE(HasGlobal(*r, "collections", "OrderedDict"));
  ASSERT_TRUE(r->trace.has_value());
  EXPECT_EQ(r->trace->file().content_key(), r->content_key);
  EXPECT_GT(r->trace->events_size(), 0);
  EXPECT_GT(r->elapsed_ms, 0);
}

TEST_F(ScannerTest, ScanBytesAnalysesExactlyTheBytesAndKeepsTheFileName) {
  const std::string path =
      std::string(DYNAHUG_SOURCE_DIR) + "/examples/tiny_mlp_state_dict.pt";
  const std::string data = ReadAll(path);
  ASSERT_FALSE(data.empty());
  absl::StatusOr<ScanOutcome> by_path = scanner_->ScanPath(path);
  ScanOptions options;
  options.keep_trace = true;
  absl::StatusOr<ScanOutcome> by_bytes =
      scanner_->ScanBytes(Bytes(data), "/some/dir/model.pt", options);
  ASSERT_TRUE(by_path.ok() && by_bytes.ok());
  EXPECT_EQ(by_bytes->content_key, by_path->content_key);
  // From memory, the bytes' SHA-256 costs no read: ScanBytes always has it.
  EXPECT_EQ(by_bytes->sha256, hooks::Sha256Hex(Bytes(data)));
  EXPECT_EQ(by_bytes->verdict.label(), by_path->verdict.label());
  ASSERT_TRUE(by_bytes->trace.has_value());
  const std::string scanned = by_bytes->trace->file().path();
  EXPECT_TRUE(scanned.size() > 9 &&
              scanned.substr(scanned.size() - 9) == "/model.pt")
      << scanned;
  // The private copy is gone once the scan returns.
  EXPECT_FALSE(std::filesystem::exists(scanned)) << scanned;
  EXPECT_FALSE(
      std::filesystem::exists(std::filesystem::path(scanned).parent_path()));
}

TEST_F(ScannerTest, MaliciousBytesAreMaliciousWithEvidenceAndNoMarker) {
  const std::string marker =
      absl::StrCat("/tmp/dynahug_pwned/scanner_test_", getpid());
  const std::string pickle = absl::StrCat(
      "cbuiltins\nexec\n(Vimport os; os.makedirs('/tmp/dynahug_pwned', "
      "exist_ok=True); open('",
      marker, "', 'w').write('x')\ntR.");
  absl::StatusOr<ScanOutcome> r = scanner_->ScanBytes(Bytes(pickle), "x.pkl");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->verdict.label(), proto::Verdict::MALICIOUS)
      << r->verdict.DebugString();
  EXPECT_GT(r->verdict.score(), r->verdict.threshold());
  EXPECT_FALSE(r->verdict.reasons().empty());
  EXPECT_TRUE(HasGlobal(*r, "builtins", "exec"));
  EXPECT_EQ(r->loader, "pickle.load");
  EXPECT_FALSE(std::filesystem::exists(marker)) << "sandbox escape: " << marker;
}

TEST_F(ScannerTest, InertAndUnreadableInputsAreVerdictsNotErrors) {
  absl::StatusOr<ScanOutcome> skipped =
      scanner_->ScanPath(std::string(DYNAHUG_SOURCE_DIR) +
                         "/examples/tiny-bert-snapshot/config.json");
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_EQ(skipped->verdict.label(), proto::Verdict::SKIPPED);
  EXPECT_FALSE(skipped->verdict.skip_reason().empty());
  EXPECT_TRUE(skipped->globals.empty());
  EXPECT_TRUE(skipped->loader.empty());

  absl::StatusOr<ScanOutcome> missing =
      scanner_->ScanPath("/nonexistent/dynahug/model.pt");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->verdict.label(), proto::Verdict::ERROR);
  EXPECT_NE(missing->verdict.error().find("/nonexistent/dynahug/model.pt"),
            std::string::npos)
      << missing->verdict.error();

  // A truncated pickle loads nowhere; the outcome says so (the detector
  // may still call the attempt benign: a refusing loader is no finding).
  absl::StatusOr<ScanOutcome> truncated = scanner_->ScanBytes(
      Bytes(std::string("\x80\x04\x95\x10\x00", 5)), "t.pkl");
  ASSERT_TRUE(truncated.ok()) << truncated.status();
  EXPECT_FALSE(truncated->loaded);
  EXPECT_NE(truncated->load_error.find("load failed"), std::string::npos)
      << truncated->load_error;
}

TEST_F(ScannerTest, TraceOnlyOnRequest) {
  absl::StatusOr<ScanOutcome> r = scanner_->ScanPath(
      std::string(DYNAHUG_SOURCE_DIR) + "/examples/embeddings.npy");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->trace.has_value());
  EXPECT_EQ(r->loader, "numpy.load");
}

TEST(ScannerCreateTest, BadBundleIsAnErrorNamingIt) {
  ScannerOptions options;
  options.model_path = "/nonexistent/bundle.dhm";
  options.prewarm = false;
  absl::StatusOr<std::unique_ptr<Scanner>> s = Scanner::Create(options);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/nonexistent/bundle.dhm"),
            std::string::npos)
      << s.status();
}

}  // namespace
}  // namespace dynahug
