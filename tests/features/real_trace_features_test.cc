// Features of real traces written by `dynahug trace --format json` and
// committed under testdata/ (see its README for how they were made).
#include <string>

#include "features/feature_extractor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/features/real_traces.h"

namespace dynahug::features {
namespace {

using ::testing::Contains;
using ::testing::Not;

using testing::LoadTrace;

std::vector<std::string> Names(const SparseVector& v) {
  std::vector<std::string> out;
  for (const Feature& f : v.entries()) out.push_back(v.Name(f.index));
  return out;
}

TEST(RealTraceFeaturesTest, BenignTorchStateDictLooksLikeALibraryLoad) {
  proto::Trace t = LoadTrace("tiny_mlp_state_dict.trace.json");
  ASSERT_GT(t.events_size(), 10);
  SparseVector v = FeatureExtractor().Extract(t);
  const std::vector<std::string> names = Names(v);
  EXPECT_THAT(names, Contains("global/torch._utils._rebuild_tensor_v2"));
  EXPECT_THAT(names, Contains("pickle_call/callee:collections"));
  EXPECT_THAT(names, Contains("static/format:TORCH_ZIP"));
  EXPECT_THAT(names, Contains("exit/status:OK"));
  EXPECT_THAT(names, Contains("syscall/present:openat"));
  EXPECT_THAT(names, Contains("call_edge/mod:torch -> builtins"));
  EXPECT_THAT(names, Not(Contains("audit/exec@pickle")));
  EXPECT_EQ(v.Get(Family::kBlocked, "any"), 0);
  EXPECT_EQ(v.Get(Family::kStatic, "unexecuted"), 0);
  // Every entry is named by exactly the token that hashes to it.
  for (const Feature& f : v.entries()) {
    ASSERT_FALSE(f.tokens.empty());
    for (const std::string& token : f.tokens) {
      EXPECT_EQ(FeatureIndex(FamilyOfIndex(f.index), token), f.index);
    }
  }
  // The syscall-only (DynaHug parity) view is a strict subset.
  SparseVector s =
      FeatureExtractor({.families = FamilySet::SyscallOnly()}).Extract(t);
  EXPECT_GT(s.size(), 0u);
  EXPECT_LT(s.size(), v.size());
  for (const Feature& f : s.entries()) {
    EXPECT_DOUBLE_EQ(v.Get(f.index), f.value) << s.Name(f.index);
  }
}

TEST(RealTraceFeaturesTest, OsSystemIsPickleCausedAndItsCloneBlocked) {
  SparseVector v =
      FeatureExtractor().Extract(LoadTrace("os_system_true.trace.json"));
  EXPECT_GT(v.Get(Family::kAudit, "os.system@pickle"), 0);
  EXPECT_GT(v.Get(Family::kAudit, "os.system:executable=true"), 0);
  EXPECT_GT(v.Get(Family::kBlocked, "clone"), 0);
  EXPECT_GT(v.Get(Family::kGlobal, "os.system"), 0);
  EXPECT_GT(v.Get(Family::kPickleCall, "sig:os.system(str.path)"), 0);
}

TEST(RealTraceFeaturesTest, ExecOfASourceStringIsPickleCaused) {
  SparseVector v =
      FeatureExtractor().Extract(LoadTrace("exec_string.trace.json"));
  EXPECT_GT(v.Get(Family::kAudit, "compile@pickle"), 0);
  EXPECT_GT(v.Get(Family::kAudit, "exec@pickle"), 0);
  EXPECT_GT(v.Get(Family::kAudit, "exec@pickle:via=builtins.exec"), 0);
  EXPECT_EQ(v.Get(Family::kAudit, "exec@lib"), 0);
  EXPECT_GT(v.Get(Family::kAudit, "open@pickle:mode=w"), 0);
  EXPECT_GT(v.Get(Family::kPickleCall, "sig:builtins.exec(str.code)"), 0);
}

TEST(RealTraceFeaturesTest, ImportForAGlobalIsLibraryMachinery) {
  SparseVector v = FeatureExtractor().Extract(
      LoadTrace("global_import_webbrowser.trace.json"));
  EXPECT_GT(v.Get(Family::kAudit, "exec@lib"), 0);
  EXPECT_GT(v.Get(Family::kAudit, "marshal.loads@lib"), 0);
  EXPECT_EQ(v.Get(Family::kAudit, "exec@pickle"), 0);
  EXPECT_EQ(v.Get(Family::kAudit, "marshal.loads@pickle"), 0);
  EXPECT_GT(v.Get(Family::kAudit, "import:module=webbrowser"), 0);
  EXPECT_GT(v.Get(Family::kIntegrity, "sys.modules.added:module=shlex"), 0);
  EXPECT_GT(v.Get(Family::kExit, "status:LOAD_FAILED"), 0);
  EXPECT_GT(v.Get(Family::kExit, "load:error_type:webbrowser.Error"), 0);
}

TEST(RealTraceFeaturesTest, FullFeaturesSeparateOsSystemMoreThanSyscallsAlone) {
  FeatureExtractor x;
  SparseVector benign = x.Extract(LoadTrace("tiny_mlp_state_dict.trace.json"));
  SparseVector system = x.Extract(LoadTrace("os_system_true.trace.json"));
  // Syscall-only vectors of the two differ much less than the full ones:
  // the syscall view alone sees only a blocked clone.
  FeatureExtractor s({.families = FamilySet::SyscallOnly()});
  EXPECT_GT(SparseVector::SquaredDistance(benign, system),
            SparseVector::SquaredDistance(
                s.Extract(LoadTrace("tiny_mlp_state_dict.trace.json")),
                s.Extract(LoadTrace("os_system_true.trace.json"))));
}

}  // namespace
}  // namespace dynahug::features
