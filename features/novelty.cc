#include "features/novelty.h"

#include <algorithm>
#include <cmath>

#include "features/internal/str.h"

namespace dynahug::features {

int NoveltyGroupOf(const Feature& f) {
  const Family family = FamilyOfIndex(f.index);
  if (family == Family::kAudit || family == Family::kNative) {
    const bool pickle = std::any_of(
        f.tokens.begin(), f.tokens.end(),
        [](const auto& t) { return t.find("@pickle") != std::string::npos; });
    if (pickle) {
      return family == Family::kAudit ? kAuditPickleGroup : kNativePickleGroup;
    }
  }
  return static_cast<int>(family);
}

std::string_view NoveltyGroupName(int group) {
  if (group == kAuditPickleGroup) return "audit@pickle";
  if (group == kNativePickleGroup) return "native@pickle";
  return FamilyName(static_cast<Family>(group));
}

std::string NoveltyFeatureName(int k) {
  return internal::Cat("novelty/", NoveltyGroupName(k / 2),
                       k % 2 == 0 ? ":mass" : ":count");
}

GroupedVector ToGrouped(const SparseVector& v) {
  GroupedVector out;
  out.index.reserve(v.size());
  out.value.reserve(v.size());
  out.group.reserve(v.size());
  for (const Feature& f : v.entries()) {
    out.index.push_back(f.index);
    out.value.push_back(f.value);
    out.group.push_back(static_cast<uint8_t>(NoveltyGroupOf(f)));
  }
  return out;
}

Vocabulary::Vocabulary(std::vector<uint32_t> indices)
    : indices_(std::move(indices)) {
  std::sort(indices_.begin(), indices_.end());
  indices_.erase(std::unique(indices_.begin(), indices_.end()), indices_.end());
}

bool Vocabulary::Contains(uint32_t index) const {
  return std::binary_search(indices_.begin(), indices_.end(), index);
}

double Novelty::Feature(int k) const {
  const int g = k / 2;
  return k % 2 == 0 ? mass[g] : static_cast<double>(count[g]);
}

double NoveltySurprisal(const double* sorted_reference, size_t n, double x) {
  if (!(x > 0)) return 0;
  const double* end = sorted_reference + n;
  const size_t at_least =
      static_cast<size_t>(end - std::lower_bound(sorted_reference, end, x));
  double s = -std::log((at_least + 1.0) / (n + 1.0));
  const double top = n > 0 ? std::max(sorted_reference[n - 1], 0.0) : 0.0;
  if (x > top) s += std::log1p(x - top);
  return s;
}

bool Novelty::empty() const {
  return std::all_of(count.begin(), count.end(),
                     [](uint32_t c) { return c == 0; });
}

GroupFrequency::GroupFrequency(std::vector<int> unit_of_group,
                               std::vector<int> fold_of_unit)
    : unit_of_group_(std::move(unit_of_group)),
      fold_of_unit_(std::move(fold_of_unit)) {}

void GroupFrequency::Add(int group, const GroupedVector& v) {
  for (uint32_t index : v.index) pairs_.emplace_back(index, group);
}

void GroupFrequency::Finish() {
  std::sort(pairs_.begin(), pairs_.end());
  pairs_.erase(std::unique(pairs_.begin(), pairs_.end()), pairs_.end());
  indices_.clear();
  groups_.clear();
  unit_begin_.assign(1, 0);
  fold_begin_.assign(1, 0);
  unit_counts_.clear();
  fold_counts_.clear();
  auto bump = [](std::vector<Count>& counts, uint32_t begin, int key) {
    for (uint32_t i = begin; i < counts.size(); ++i) {
      if (counts[i].key == key) {
        ++counts[i].groups;
        return;
      }
    }
    counts.push_back({key, 1});
  };
  auto by_key = [](const Count& a, const Count& b) { return a.key < b.key; };
  for (size_t i = 0; i < pairs_.size();) {
    const uint32_t index = pairs_[i].first;
    indices_.push_back(index);
    groups_.push_back(0);
    const uint32_t ub = static_cast<uint32_t>(unit_counts_.size());
    const uint32_t fb = static_cast<uint32_t>(fold_counts_.size());
    for (; i < pairs_.size() && pairs_[i].first == index; ++i) {
      ++groups_.back();
      const int g = pairs_[i].second;
      const int unit = g >= 0 && g < static_cast<int>(unit_of_group_.size())
                           ? unit_of_group_[g]
                           : -1;
      const int fold =
          unit >= 0 && unit < static_cast<int>(fold_of_unit_.size())
              ? fold_of_unit_[unit]
              : -1;
      if (unit >= 0) bump(unit_counts_, ub, unit);
      if (fold >= 0) bump(fold_counts_, fb, fold);
    }
    std::sort(unit_counts_.begin() + ub, unit_counts_.end(), by_key);
    std::sort(fold_counts_.begin() + fb, fold_counts_.end(), by_key);
    unit_begin_.push_back(static_cast<uint32_t>(unit_counts_.size()));
    fold_begin_.push_back(static_cast<uint32_t>(fold_counts_.size()));
  }
  pairs_.clear();
  pairs_.shrink_to_fit();
}

uint32_t GroupFrequency::Find(const std::vector<Count>& counts, uint32_t begin,
                              uint32_t end, int key) {
  auto it = std::lower_bound(counts.begin() + begin, counts.begin() + end, key,
                             [](const Count& c, int k) { return c.key < k; });
  return it != counts.begin() + end && it->key == key ? it->groups : 0;
}

uint32_t GroupFrequency::Groups(uint32_t index) const {
  auto it = std::lower_bound(indices_.begin(), indices_.end(), index);
  if (it == indices_.end() || *it != index) return 0;
  return groups_[it - indices_.begin()];
}

uint32_t GroupFrequency::GroupsOutside(uint32_t index, int fold,
                                       int unit) const {
  auto it = std::lower_bound(indices_.begin(), indices_.end(), index);
  if (it == indices_.end() || *it != index) return 0;
  const size_t pos = it - indices_.begin();
  uint32_t n = groups_[pos];
  if (fold >= 0) {
    n -= Find(fold_counts_, fold_begin_[pos], fold_begin_[pos + 1], fold);
  }
  const int unit_fold =
      unit >= 0 && unit < static_cast<int>(fold_of_unit_.size())
          ? fold_of_unit_[unit]
          : -1;
  if (unit >= 0 && (fold < 0 || unit_fold != fold)) {
    n -= Find(unit_counts_, unit_begin_[pos], unit_begin_[pos + 1], unit);
  }
  return n;
}

Vocabulary GroupFrequency::Build(int min_groups, int without_fold) const {
  std::vector<uint32_t> out;
  const uint32_t m = static_cast<uint32_t>(std::max(min_groups, 1));
  for (uint32_t index : indices_) {
    if (GroupsOutside(index, without_fold, -1) >= m) out.push_back(index);
  }
  return Vocabulary(std::move(out));
}

}  // namespace dynahug::features
