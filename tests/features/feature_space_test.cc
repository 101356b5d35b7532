#include "features/feature_space.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynahug::features {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(Fnv1a64Test, MatchesPublishedTestVectors) {
  // Reference values of the FNV-1a 64-bit test suite (isthe.com/chongo).
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(FeatureIndexTest, TokenLandsInsideItsFamilyBlock) {
  for (int f = 0; f < kFamilyCount; ++f) {
    const Family family = static_cast<Family>(f);
    const uint32_t index = FeatureIndex(family, "os.system");
    EXPECT_EQ(FamilyOfIndex(index), family);
    EXPECT_LT(index, kDimension);
    EXPECT_EQ(index % kIndicesPerFamily,
              Fnv1a64("os.system") & (kIndicesPerFamily - 1));
  }
}

TEST(FamilySetTest, ParsesNamesAndAll) {
  EXPECT_EQ(*ParseFamilySet("all"), FamilySet::All());
  EXPECT_EQ(*ParseFamilySet("syscall"), FamilySet::SyscallOnly());
  absl::StatusOr<FamilySet> two = ParseFamilySet(" static , blocked ");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(*two, FamilySet::Of({Family::kStatic, Family::kBlocked}));
  EXPECT_FALSE(two->Contains(Family::kSyscall));
  for (int f = 0; f < kFamilyCount; ++f) {
    const Family family = static_cast<Family>(f);
    EXPECT_EQ(*ParseFamilySet(FamilyName(family)), FamilySet::Of({family}));
  }
}

TEST(FamilySetTest, UnknownFamilyIsAnErrorNamingIt) {
  absl::StatusOr<FamilySet> bad = ParseFamilySet("syscall,sycall");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("\"sycall\""));
  EXPECT_THAT(bad.status().message(), HasSubstr("known: syscall"));
}

TEST(SparseVectorTest, SortsMergesDuplicatesAndDropsZeros) {
  SparseVector v(
      {{7, 1.0, {"b"}}, {3, 2.0, {"a"}}, {7, 0.5, {"c"}}, {5, 0.0, {"zero"}}});
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v.entries()[0].index, 3u);
  EXPECT_EQ(v.entries()[1].index, 7u);
  EXPECT_DOUBLE_EQ(v.Get(7), 1.5);
  EXPECT_THAT(v.entries()[1].tokens, ElementsAre("b", "c"));
  EXPECT_EQ(v.Get(5), 0);
  EXPECT_EQ(v.Find(5), nullptr);
}

TEST(SparseVectorTest, NameShowsFamilyTokenAndCollisions) {
  const uint32_t i = FeatureIndex(Family::kAudit, "exec@pickle");
  SparseVector v({{i, 1.0, {"exec@pickle"}}});
  EXPECT_EQ(v.Name(i), "audit/exec@pickle");
  SparseVector collided({{i, 1.0, {"x"}}, {i, 1.0, {"y"}}});
  EXPECT_EQ(collided.Name(i), "audit/x | y");
  EXPECT_EQ(v.Name(FeatureIndex(Family::kSyscall, "absent")),
            absl::StrCat("syscall/#", FeatureIndex(Family::kSyscall, "absent") %
                                          kIndicesPerFamily));
}

TEST(SparseVectorTest, SquaredDistanceCountsEveryCoordinate) {
  SparseVector a({{1, 1.0, {}}, {2, 2.0, {}}});
  SparseVector b({{2, 1.0, {}}, {4, 3.0, {}}});
  // (1-0)^2 + (2-1)^2 + (0-3)^2
  EXPECT_DOUBLE_EQ(SparseVector::SquaredDistance(a, b), 11.0);
  EXPECT_DOUBLE_EQ(SparseVector::SquaredDistance(b, a), 11.0);
  EXPECT_DOUBLE_EQ(SparseVector::SquaredDistance(a, a), 0.0);
  EXPECT_DOUBLE_EQ(a.SquaredNorm(), 5.0);
}

}  // namespace
}  // namespace dynahug::features
