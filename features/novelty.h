// Novelty: how much of a feature vector a task cluster has never seen.
//
// The feature space keeps every token (hashing, features/feature_space.h);
// a one-class SVM can only model the tokens its training set had, so the
// model layer splits each vector into
//   - the known part: entries whose index is in the cluster's Vocabulary,
//     which become SVM dimensions, and
//   - explicit novelty features: per novelty group (the family, with audit
//     and native events caused by a pickle opcode split off), the mass
//     (sum of values) and the count of unseen entries, each turned into
//     its surprisal among the cluster's cross-fitted training values
//     (NoveltySurprisal) before the SVM sees it.
// Nothing is dropped: an unseen `audit/os.system@pickle` raises
// `novelty/audit@pickle:mass`. Back-off along module paths comes from the
// extractor's hierarchy tokens: an unseen class under a known package only
// leaves its small leaf-level entry unseen, an unseen top-level module all
// of its levels (the top one carrying most of the weight).
//
// Cross-fitting. Measured against the full training vocabulary, every
// training vector has zero novelty, and the SVM would learn that any
// novelty is anomalous, while a benign model of a new family always brings
// some. So a training example's novelty is measured against the vocabulary
// built without its own cross-fitting unit (its group, or its family of
// groups): GroupFrequency answers "is index i known to the vocabulary built
// without unit u" exactly, from document frequencies over groups.
//
// Thread safety: pure functions and immutable-after-construction classes.
#ifndef DYNAHUG_FEATURES_NOVELTY_H_
#define DYNAHUG_FEATURES_NOVELTY_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "features/feature_space.h"

namespace dynahug::features {

// Novelty groups: the kFamilyCount families in enum order, then audit and
// native entries whose token carries "@pickle" provenance.
inline constexpr int kNoveltyGroupCount = kFamilyCount + 2;
inline constexpr int kAuditPickleGroup = kFamilyCount;
inline constexpr int kNativePickleGroup = kFamilyCount + 1;

// Two novelty features per group: mass (2g) and count (2g + 1).
inline constexpr int kNoveltyFeatureCount = 2 * kNoveltyGroupCount;
// Novelty feature k sits at index kNoveltyIndexBase + k of the model input
// space, after the feature space.
inline constexpr uint32_t kNoveltyIndexBase = kDimension;

// Group of one entry: its family, or kAuditPickleGroup / kNativePickleGroup
// when a token of an audit / native entry contains "@pickle". Without
// tokens (names not kept) the family.
int NoveltyGroupOf(const Feature& f);

// "syscall", ..., "exit", "audit@pickle", "native@pickle".
std::string_view NoveltyGroupName(int group);

// "novelty/<group>:mass" or "novelty/<group>:count" for feature k.
std::string NoveltyFeatureName(int k);

// A feature vector as the model layer keeps it: indices, values and
// novelty groups of the entries, sorted by index, without names (a
// fraction of SparseVector's memory when thousands of training vectors are
// held).
struct GroupedVector {
  std::vector<uint32_t> index;
  std::vector<double> value;
  std::vector<uint8_t> group;
  size_t size() const { return index.size(); }
};
GroupedVector ToGrouped(const SparseVector& v);

// A sorted set of feature-space indices.
class Vocabulary {
 public:
  Vocabulary() = default;
  // `indices` in any order; duplicates are dropped.
  explicit Vocabulary(std::vector<uint32_t> indices);
  bool Contains(uint32_t index) const;
  const std::vector<uint32_t>& indices() const { return indices_; }
  size_t size() const { return indices_.size(); }

 private:
  std::vector<uint32_t> indices_;
};

// Unseen mass and count per novelty group.
struct Novelty {
  std::array<double, kNoveltyGroupCount> mass{};
  std::array<uint32_t, kNoveltyGroupCount> count{};
  // Raw feature k: mass[k / 2] for even k, count[k / 2] for odd.
  double Feature(int k) const;
  bool empty() const;
};

// Surprisal of a novelty value `x` among the `n` sorted reference values
// (the cross-fitted training values of that feature): 0 for x <= 0, else
// -log((#{references >= x} + 1) / (n + 1)), plus log1p(x - max reference)
// beyond the largest reference (so it keeps growing). Novelty that benign
// training vectors show as often as not costs almost nothing; novelty in a
// group no benign vector had costs log(n + 1) and more: the SVM sees novelty
// in units of how rare it is among benign files of new groups, estimated by
// cross-fitting, instead of raw token counts.
double NoveltySurprisal(const double* sorted_reference, size_t n, double x);

// Novelty of `v` against the set of indices `known` says are known.
// `known(i)` must be a pure predicate; called once per entry.
template <typename Known>
Novelty MeasureNovelty(const GroupedVector& v, const Known& known) {
  Novelty n;
  for (size_t i = 0; i < v.size(); ++i) {
    if (known(v.index[i])) continue;
    n.mass[v.group[i]] += v.value[i];
    ++n.count[v.group[i]];
  }
  return n;
}

// Document frequencies over the groups of a training set, for vocabularies
// and cross-fitting. Groups are numbered 0..n-1 by the caller, each belongs
// to one cross-fitting unit (itself, or a family of similar groups), and
// each unit to at most one cross-validation fold (units nest in folds).
//
// Cross-fitting: an entry i of a vector of group g in unit u is known when
// at least `min_groups` groups outside the excluded ones have i:
//   final model, training vector       GroupsOutside(i, -1, u) >= m
//   CV fold k, held-out vector          GroupsOutside(i, k, -1) >= m
//   CV fold k, training vector          GroupsOutside(i, k, u) >= m
// A new file is judged against Build(m): GroupsOutside(i, -1, -1) >= m.
class GroupFrequency {
 public:
  // `unit_of_group[g]` is the unit (0..) of group g; `fold_of_unit[u]` the
  // fold of unit u, or -1.
  GroupFrequency(std::vector<int> unit_of_group, std::vector<int> fold_of_unit);

  // Records that group `g` has the entries of `v` (several vectors of one
  // group count once).
  void Add(int group, const GroupedVector& v);
  // Must be called after the last Add and before the queries.
  void Finish();

  // Number of groups that have `index`.
  uint32_t Groups(uint32_t index) const;
  // Number of groups that have `index`, leaving out the groups of fold
  // `fold` and of unit `unit` (-1: none).
  uint32_t GroupsOutside(uint32_t index, int fold, int unit) const;

  // Indices at least `min_groups` groups outside fold `without_fold` have
  // (-1: all groups): the vocabulary of those groups.
  Vocabulary Build(int min_groups, int without_fold = -1) const;

 private:
  struct Count {
    int key;  // unit or fold
    uint32_t groups;
  };
  // Count of `key` in [begin, end), 0 when absent.
  static uint32_t Find(const std::vector<Count>& counts, uint32_t begin,
                       uint32_t end, int key);

  std::vector<int> unit_of_group_;
  std::vector<int> fold_of_unit_;
  // (index, group) pairs while adding; cleared by Finish.
  std::vector<std::pair<uint32_t, int>> pairs_;
  // After Finish, per sorted index: its group count and the ranges of its
  // per-unit and per-fold counts (sorted by key).
  std::vector<uint32_t> indices_;
  std::vector<uint32_t> groups_;
  std::vector<uint32_t> unit_begin_, fold_begin_;  // one more than indices_
  std::vector<Count> unit_counts_, fold_counts_;
};

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_NOVELTY_H_
