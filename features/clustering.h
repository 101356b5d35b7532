// Task clusters: grouping benign training traces by the libraries and
// structures their loads exercise, and routing a new file to the nearest
// cluster.
//
// Routing profile. A small presence vector of a trace, read from its full
// feature vector: the first two levels of every global the load resolved
// or the pickles reference (`global/torch`, `global/torch._utils`,
// `static/global:sklearn.ensemble`, stub levels included), the loader
// (`exit/loader:torch.load`) and the container formats
// (`static/format:TORCH_ZIP`). Leaf class names, counts, syscalls and
// events are left out: they tell models of one task apart, not tasks.
// Profiles are L2-normalised, so two profiles compare by cosine.
//
// Algorithm: average-linkage agglomerative clustering of *group* profiles
// (the normalised mean of the profiles of one group's files, so a model
// saved ten ways weighs as one) by cosine distance, merging the closest
// pair until no pair is closer than ClusterOptions::merge_distance; groups
// with different task labels are never merged (cannot-link); clusters with
// fewer than min_groups groups are then merged into the nearest cluster of
// the same label. Why this algorithm: it is deterministic (no random
// initialisation, ties broken by group order), needs no number of clusters
// up front (the cut is a distance with a meaning: how different the
// library mix may be), honours task labels as constraints, and n is the
// number of training groups (hundreds), so its O(n^3) is negligible.
// k-means would need k and a seed; density methods leave outliers
// unassigned, and every benign group must land in some cluster.
//
// Routing: the cluster whose centroid (normalised mean of its group
// profiles) has the largest cosine with the file's profile; ties go to the
// lower cluster number.
//
// Thread safety: pure functions.
#ifndef DYNAHUG_FEATURES_CLUSTERING_H_
#define DYNAHUG_FEATURES_CLUSTERING_H_

#include <string>
#include <vector>

#include "features/feature_space.h"

namespace dynahug::features {

// The routing profile of a feature vector extracted with names and at
// least the global, static and exit families. Unit L2 norm (empty when
// there is nothing to route on). Keeps the tokens.
SparseVector RoutingProfile(const SparseVector& features);

// Normalised mean of `profiles` (unit L2; empty when all are empty).
SparseVector Centroid(const std::vector<const SparseVector*>& profiles);

// Cosine of two unit vectors (their dot product).
double Cosine(const SparseVector& a, const SparseVector& b);

struct ClusterOptions {
  // Average-linkage cosine distance above which two clusters stay apart.
  double merge_distance = 0.6;
  // Clusters with fewer groups are merged into the nearest cluster of the
  // same task label (if there is one).
  int min_groups = 8;
  // Upper bound on the number of clusters; merging continues past
  // merge_distance until it holds.
  int max_clusters = 12;
};

// One group to cluster: its profile (unit L2, e.g. Centroid of its files'
// profiles) and its task label ("" when none).
struct GroupProfile {
  SparseVector profile;
  std::string task;
};

// Cluster number (0..k-1) of each group, numbered in order of each
// cluster's first group. Deterministic for a given input order.
std::vector<int> ClusterGroups(const std::vector<GroupProfile>& groups,
                               const ClusterOptions& options);

// Index of the centroid nearest to `profile` among those `allowed` (all
// when `allowed` is empty; same length as `centroids` otherwise). -1 when
// nothing is allowed.
int Route(const SparseVector& profile,
          const std::vector<SparseVector>& centroids,
          const std::vector<bool>& allowed = {});

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_CLUSTERING_H_
