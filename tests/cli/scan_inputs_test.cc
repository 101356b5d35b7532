// Unit tests of runtime/cli/scan_inputs: directory walking, symlink policy,
// Hugging Face cache naming and one analysis per distinct file.
#include "runtime/cli/scan_inputs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace dynahug::runtime {
namespace {

namespace fs = std::filesystem;

class ScanInputsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/dynahug-scan-inputs-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const std::string& rel, const std::string& content = "x") {
    fs::create_directories(fs::path(root_ + "/" + rel).parent_path());
    std::ofstream(root_ + "/" + rel) << content;
  }
  void Link(const std::string& target, const std::string& rel) {
    fs::create_directories(fs::path(root_ + "/" + rel).parent_path());
    fs::create_symlink(target, root_ + "/" + rel);
  }
  const ScanInput* Find(const InputSet& set, const std::string& rel) {
    for (const ScanInput& in : set.inputs) {
      if (in.path == root_ + "/" + rel) return &in;
    }
    return nullptr;
  }

  std::string root_;
};

TEST_F(ScanInputsTest, WalksDirectoriesInNameOrder) {
  Write("b/z.pt");
  Write("a.pkl");
  Write("b/a.bin");
  InputSet set = CollectScanInputs({root_});
  ASSERT_EQ(set.inputs.size(), 3u);
  EXPECT_EQ(set.inputs[0].path, root_ + "/a.pkl");
  EXPECT_EQ(set.inputs[1].path, root_ + "/b/a.bin");
  EXPECT_EQ(set.inputs[2].path, root_ + "/b/z.pt");
  EXPECT_EQ(set.blobs.size(), 3u);
}

TEST_F(ScanInputsTest, SymlinksAreFollowedOnlyInsideTheTree) {
  Write("tree/real.pt");
  Write("outside/secret.pt");
  Link("real.pt", "tree/inside-link.pt");
  Link(root_ + "/outside/secret.pt", "tree/escape.pt");
  Write("tree/sub/inner.pt");
  Link("sub", "tree/dir-link");
  Link("../outside", "tree/outer-dir-link");
  Link("missing.pt", "tree/dangling.pt");
  InputSet set = CollectScanInputs({root_ + "/tree"});
  const ScanInput* inside = Find(set, "tree/inside-link.pt");
  const ScanInput* real = Find(set, "tree/real.pt");
  ASSERT_NE(inside, nullptr);
  ASSERT_NE(real, nullptr);
  ASSERT_TRUE(inside->blob && real->blob);
  EXPECT_EQ(*inside->blob, *real->blob) << "one analysis per file";
  EXPECT_EQ(set.blobs.size(), 2u);  // real.pt, sub/inner.pt
  const ScanInput* escape = Find(set, "tree/escape.pt");
  ASSERT_NE(escape, nullptr);
  EXPECT_FALSE(escape->blob);
  EXPECT_NE(escape->skip_reason.find("outside the scanned tree"),
            std::string::npos);
  const ScanInput* dir = Find(set, "tree/dir-link");
  ASSERT_NE(dir, nullptr);
  EXPECT_FALSE(dir->blob);
  EXPECT_NE(dir->skip_reason.find("directory"), std::string::npos);
  const ScanInput* outer = Find(set, "tree/outer-dir-link");
  ASSERT_NE(outer, nullptr);
  EXPECT_NE(outer->skip_reason.find("outside the scanned tree"),
            std::string::npos);
  const ScanInput* dangling = Find(set, "tree/dangling.pt");
  ASSERT_NE(dangling, nullptr);
  EXPECT_EQ(dangling->skip_reason, "dangling symlink");
}

TEST_F(ScanInputsTest, MissingArgumentIsAnError) {
  InputSet set = CollectScanInputs({root_ + "/nope.pt"});
  ASSERT_EQ(set.inputs.size(), 1u);
  EXPECT_FALSE(set.inputs[0].error.empty());
  EXPECT_TRUE(set.blobs.empty());
}

TEST_F(ScanInputsTest, HuggingFaceCacheIsNamedByRepoRevisionAndFile) {
  const std::string repo = "hub/models--acme--tiny-bert";
  Write(repo + "/blobs/aaa", "weights");
  Write(repo + "/blobs/bbb", "{}");
  Write(repo + "/refs/main", "0123456789abcdef");
  for (const char* rev : {"0123456789abcdef", "fedcba9876543210"}) {
    Link("../../blobs/aaa", repo + "/snapshots/" + rev + "/pytorch_model.bin");
    Link("../../blobs/bbb", repo + "/snapshots/" + rev + "/config.json");
  }
  // Scanning one snapshot folder still follows its links into blobs/.
  for (const std::string& start :
       {root_ + "/hub", root_ + "/" + repo + "/snapshots/0123456789abcdef"}) {
    SCOPED_TRACE(start);
    InputSet set = CollectScanInputs({start});
    EXPECT_EQ(set.blobs.size(), 2u) << "each blob analysed once";
    for (const ScanInput& in : set.inputs) {
      SCOPED_TRACE(in.path);
      EXPECT_TRUE(in.skip_reason.empty()) << in.skip_reason;
      ASSERT_TRUE(in.hub.has_value());
      EXPECT_EQ(in.hub->kind, "model");
      EXPECT_EQ(in.hub->repo, "acme/tiny-bert");
      EXPECT_TRUE(in.hub->file == "pytorch_model.bin" ||
                  in.hub->file == "config.json");
    }
  }
  InputSet all = CollectScanInputs({root_ + "/hub"});
  EXPECT_EQ(all.inputs.size(), 4u) << "blobs/ and refs/ are not listed";
}

TEST(ParseHubPathTest, Shapes) {
  auto ref = ParseHubPath(
      "/root/.cache/huggingface/hub/datasets--org--data/snapshots/abc/sub/x.pkl");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->kind, "dataset");
  EXPECT_EQ(ref->repo, "org/data");
  EXPECT_EQ(ref->revision, "abc");
  EXPECT_EQ(ref->file, "sub/x.pkl");
  EXPECT_EQ(HubDisplay(*ref), "dataset:org/data@abc:sub/x.pkl");
  auto plain = ParseHubPath("hub/models--gpt2/snapshots/r/model.bin");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->repo, "gpt2");
  EXPECT_FALSE(ParseHubPath("models--a--b/blobs/aaa").has_value());
  EXPECT_FALSE(ParseHubPath("/data/models/x.pt").has_value());
}

}  // namespace
}  // namespace dynahug::runtime
