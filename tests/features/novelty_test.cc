// Novelty (features/novelty.h): groups, vocabularies, cross-fitting counts
// and the surprisal transform.
#include "features/novelty.h"

#include <cmath>
#include <vector>

#include "features/feature_extractor.h"
#include "gtest/gtest.h"
#include "tests/features/synthetic_traces.h"

namespace dynahug::features {
namespace {

Feature Entry(Family f, const std::string& token, double value = 1) {
  return Feature{FeatureIndex(f, token), value, {token}};
}

GroupedVector Grouped(std::vector<Feature> entries) {
  return ToGrouped(SparseVector(std::move(entries)));
}

TEST(NoveltyTest, PickleProvenanceOfAuditAndNativeHasItsOwnGroup) {
  EXPECT_EQ(NoveltyGroupOf(Entry(Family::kAudit, "exec@pickle")),
            kAuditPickleGroup);
  EXPECT_EQ(NoveltyGroupOf(Entry(Family::kNative, "ctypes.dlsym@pickle")),
            kNativePickleGroup);
  EXPECT_EQ(NoveltyGroupOf(Entry(Family::kAudit, "exec@lib")),
            static_cast<int>(Family::kAudit));
  // Other families keep their group even with "@pickle" in a token.
  EXPECT_EQ(NoveltyGroupOf(Entry(Family::kGlobal, "x@pickle")),
            static_cast<int>(Family::kGlobal));
  EXPECT_EQ(NoveltyFeatureName(2 * kAuditPickleGroup),
            "novelty/audit@pickle:mass");
  EXPECT_EQ(NoveltyFeatureName(1), "novelty/syscall:count");
}

TEST(NoveltyTest, UnseenEntriesAddTheirValuesPerGroup) {
  const GroupedVector v = Grouped({Entry(Family::kGlobal, "torch", 0.5),
                                   Entry(Family::kGlobal, "posix", 0.8),
                                   Entry(Family::kAudit, "os.system@pickle", 2),
                                   Entry(Family::kBlocked, "clone", 1)});
  const Vocabulary vocab({FeatureIndex(Family::kGlobal, "torch")});
  const Novelty n =
      MeasureNovelty(v, [&](uint32_t i) { return vocab.Contains(i); });
  EXPECT_DOUBLE_EQ(n.mass[static_cast<int>(Family::kGlobal)], 0.8);
  EXPECT_EQ(n.count[static_cast<int>(Family::kGlobal)], 1u);
  EXPECT_DOUBLE_EQ(n.mass[kAuditPickleGroup], 2);
  EXPECT_EQ(n.count[static_cast<int>(Family::kBlocked)], 1u);
  EXPECT_EQ(n.count[static_cast<int>(Family::kAudit)], 0u);
  EXPECT_DOUBLE_EQ(n.Feature(2 * kAuditPickleGroup), 2);
  EXPECT_DOUBLE_EQ(n.Feature(2 * kAuditPickleGroup + 1), 1);
  EXPECT_FALSE(n.empty());
}

TEST(NoveltyTest, UnseenClassUnderAKnownPackageIsLessNovelThanUnseenModule) {
  // Back-off comes from the extractor's hierarchy tokens.
  FeatureExtractor ex({.families = FamilySet::Of({Family::kGlobal})});
  proto::Trace known = testing::SklearnTrace(0, 0);
  const GroupedVector train = ToGrouped(ex.Extract(known));
  const Vocabulary vocab(train.index);
  auto novelty_of = [&](const std::string& module, const std::string& name) {
    proto::Trace t = testing::SklearnTrace(0, 0);
    testing::AddGlobal(t, module, name, 300);
    const Novelty n = MeasureNovelty(ToGrouped(ex.Extract(t)), [&](uint32_t i) {
      return vocab.Contains(i);
    });
    return n.mass[static_cast<int>(Family::kGlobal)];
  };
  const double new_class =
      novelty_of("sklearn.linear_model._logistic", "NewEstimator");
  const double new_module = novelty_of("idlelib.pyshell", "PyShell");
  EXPECT_GT(new_class, 0);
  EXPECT_GT(new_module, 2 * new_class);
}

TEST(NoveltyTest, VocabularyIsSortedAndUnique) {
  const Vocabulary v({5, 1, 5, 3});
  EXPECT_EQ(v.indices(), (std::vector<uint32_t>{1, 3, 5}));
  EXPECT_TRUE(v.Contains(3));
  EXPECT_FALSE(v.Contains(4));
}

// Groups 0, 1 (unit 0, fold 0), 2 (unit 1, fold 1), 3 (unit 2, fold 1).
class GroupFrequencyTest : public ::testing::Test {
 protected:
  GroupFrequencyTest() : freq_({0, 0, 1, 2}, {0, 1, 1}) {
    auto v = [](std::vector<uint32_t> idx) {
      GroupedVector g;
      for (uint32_t i : idx) {
        g.index.push_back(i);
        g.value.push_back(1);
        g.group.push_back(0);
      }
      return g;
    };
    freq_.Add(0, v({10, 20}));
    freq_.Add(0, v({10}));  // a second file of group 0 counts once
    freq_.Add(1, v({10}));
    freq_.Add(2, v({10, 30}));
    freq_.Add(3, v({40}));
    freq_.Finish();
  }
  GroupFrequency freq_;
};

TEST_F(GroupFrequencyTest, CountsGroupsNotFiles) {
  EXPECT_EQ(freq_.Groups(10), 3u);
  EXPECT_EQ(freq_.Groups(20), 1u);
  EXPECT_EQ(freq_.Groups(99), 0u);
}

TEST_F(GroupFrequencyTest, LeavesOutTheUnitAndTheFold) {
  // Index 10 without unit 0 (groups 0 and 1): only group 2 has it.
  EXPECT_EQ(freq_.GroupsOutside(10, -1, 0), 1u);
  // Without fold 1 (groups 2, 3): groups 0 and 1.
  EXPECT_EQ(freq_.GroupsOutside(10, 1, -1), 2u);
  // Without fold 1 and unit 0: nothing.
  EXPECT_EQ(freq_.GroupsOutside(10, 1, 0), 0u);
  // A unit inside the excluded fold is not subtracted twice.
  EXPECT_EQ(freq_.GroupsOutside(10, 1, 1), 2u);
  // Token of a single unit: never known to that unit's own vectors, so a
  // training vector carries it as novelty (cross-fitting).
  EXPECT_EQ(freq_.GroupsOutside(20, -1, 0), 0u);
  EXPECT_EQ(freq_.GroupsOutside(30, -1, 1), 0u);
}

TEST_F(GroupFrequencyTest, BuildsVocabulariesWithAndWithoutAFold) {
  EXPECT_EQ(freq_.Build(1).indices(), (std::vector<uint32_t>{10, 20, 30, 40}));
  EXPECT_EQ(freq_.Build(2).indices(), (std::vector<uint32_t>{10}));
  EXPECT_EQ(freq_.Build(1, 1).indices(), (std::vector<uint32_t>{10, 20}));
}

TEST(NoveltySurprisalTest, RareNoveltyCostsMoreThanUsualNovelty) {
  // 9 training vectors: 6 without novelty, 3 with 1, 2, 4.
  const std::vector<double> ref = {0, 0, 0, 0, 0, 0, 1, 2, 4};
  const size_t n = ref.size();
  EXPECT_EQ(NoveltySurprisal(ref.data(), n, 0), 0);
  // 3 of 9 have at least 1: -log(4 / 10).
  EXPECT_NEAR(NoveltySurprisal(ref.data(), n, 1), -std::log(0.4), 1e-12);
  EXPECT_NEAR(NoveltySurprisal(ref.data(), n, 4), -std::log(0.2), 1e-12);
  // Beyond the largest reference it keeps growing.
  const double beyond = NoveltySurprisal(ref.data(), n, 6);
  EXPECT_NEAR(beyond, std::log(10.0) + std::log1p(2.0), 1e-12);
  EXPECT_GT(NoveltySurprisal(ref.data(), n, 60), beyond);
  // A group no training vector had novelty in: log(n + 1) at once.
  const std::vector<double> never(9, 0);
  EXPECT_NEAR(NoveltySurprisal(never.data(), n, 0.5),
              std::log(10.0) + std::log1p(0.5), 1e-12);
}

}  // namespace
}  // namespace dynahug::features
