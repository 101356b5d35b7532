// Task clusters (features/clustering.h): routing profiles, average-linkage
// clustering with task labels, and routing.
#include "features/clustering.h"

#include <cmath>
#include <string>
#include <vector>

#include "features/feature_extractor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/features/synthetic_traces.h"

namespace dynahug::features {
namespace {

using ::testing::Contains;
using ::testing::Not;

SparseVector Profile(const proto::Trace& t) {
  return RoutingProfile(FeatureExtractor().Extract(t));
}

std::vector<std::string> Names(const SparseVector& v) {
  std::vector<std::string> out;
  for (const Feature& f : v.entries()) out.push_back(v.Name(f.index));
  return out;
}

TEST(ClusteringTest, ProfileHoldsLibrariesAndLoaderNotLeavesOrCounts) {
  const SparseVector p = Profile(testing::TorchTrace(0, 0));
  const std::vector<std::string> names = Names(p);
  EXPECT_THAT(names, Contains("global/torch"));
  EXPECT_THAT(names, Contains("global/torch._utils"));
  EXPECT_THAT(names, Contains("global/collections.OrderedDict"));
  EXPECT_THAT(names, Contains("static/global:torchvision.models"));
  EXPECT_THAT(names, Contains("exit/loader:torch.load"));
  EXPECT_THAT(names, Not(Contains("global/torch._utils._rebuild_tensor_v2")));
  EXPECT_THAT(names, Not(Contains("static/format:TORCH_ZIP")));
  EXPECT_THAT(names, Not(Contains("syscall/present:openat")));
  EXPECT_NEAR(p.SquaredNorm(), 1, 1e-12);
  // The loader weighs half a library.
  const uint32_t loader = FeatureIndex(Family::kExit, "loader:torch.load");
  const uint32_t torch = FeatureIndex(Family::kGlobal, "torch");
  EXPECT_NEAR(p.Get(loader), 0.5 * p.Get(torch), 1e-12);
}

TEST(ClusteringTest, ProfilesOfOneTaskAreCloserThanAcrossTasks) {
  const SparseVector a = Profile(testing::TorchTrace(0, 0));
  const SparseVector b = Profile(testing::TorchTrace(3, 1));
  const SparseVector c = Profile(testing::SklearnTrace(0, 0));
  EXPECT_GT(Cosine(a, b), 0.7);
  EXPECT_LT(Cosine(a, c), 0.2);
  EXPECT_NEAR(Cosine(a, a), 1, 1e-12);
}

std::vector<GroupProfile> MixedGroups(int n, const std::string& sk_task = "") {
  std::vector<GroupProfile> groups;
  for (int m = 0; m < n; ++m) {
    groups.push_back({Profile(testing::TorchTrace(m, 0)), ""});
    groups.push_back({Profile(testing::SklearnTrace(m, 0)), sk_task});
  }
  return groups;
}

TEST(ClusteringTest, SeparatesTasksAndNumbersClustersByFirstGroup) {
  const std::vector<int> c = ClusterGroups(MixedGroups(10), {.min_groups = 2});
  ASSERT_EQ(c.size(), 20u);
  for (int m = 0; m < 10; ++m) {
    EXPECT_EQ(c[2 * m], 0) << m;      // torch
    EXPECT_EQ(c[2 * m + 1], 1) << m;  // sklearn
  }
}

TEST(ClusteringTest, MaxClustersForcesMergesAndSmallClustersJoinOthers) {
  EXPECT_EQ(ClusterGroups(MixedGroups(4), {.max_clusters = 1}),
            std::vector<int>(8, 0));
  // With min_groups above either task's size, everything ends in one.
  EXPECT_EQ(ClusterGroups(MixedGroups(4), {.min_groups = 5}),
            std::vector<int>(8, 0));
}

TEST(ClusteringTest, DifferentTaskLabelsAreNeverMerged) {
  // Even forced to one cluster, labelled sklearn groups stay apart.
  const std::vector<int> c =
      ClusterGroups(MixedGroups(4, "tabular"), {.max_clusters = 1});
  for (int m = 0; m < 4; ++m) {
    EXPECT_EQ(c[2 * m], 0);
    EXPECT_EQ(c[2 * m + 1], 1);
  }
}

TEST(ClusteringTest, RoutesToTheNearestAllowedCentroid) {
  std::vector<const SparseVector*> torch_members, sk_members;
  std::vector<SparseVector> profiles;
  for (int m = 0; m < 6; ++m) {
    profiles.push_back(Profile(testing::TorchTrace(m, 0)));
    profiles.push_back(Profile(testing::SklearnTrace(m, 0)));
  }
  for (size_t i = 0; i < profiles.size(); ++i) {
    (i % 2 == 0 ? torch_members : sk_members).push_back(&profiles[i]);
  }
  const std::vector<SparseVector> centroids = {Centroid(torch_members),
                                               Centroid(sk_members)};
  // A payload injected into a host still routes with its host.
  const SparseVector evil_torch =
      Profile(testing::WithPayload(testing::TorchTrace(9, 0)));
  const SparseVector evil_sk =
      Profile(testing::WithPayload(testing::SklearnTrace(9, 0)));
  EXPECT_EQ(Route(evil_torch, centroids), 0);
  EXPECT_EQ(Route(evil_sk, centroids), 1);
  EXPECT_EQ(Route(evil_torch, centroids, {false, true}), 1);
  EXPECT_EQ(Route(evil_torch, centroids, {false, false}), -1);
  // Nothing to route on: ties go to the first cluster.
  EXPECT_EQ(Route(SparseVector(), centroids), 0);
}

}  // namespace
}  // namespace dynahug::features
