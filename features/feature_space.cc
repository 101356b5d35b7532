#include "features/feature_space.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "absl/status/status.h"
#include "features/internal/str.h"

namespace dynahug::features {
namespace {

using internal::Cat;
using internal::Join;

constexpr std::array<std::string_view, kFamilyCount> kFamilyNames = {
    "syscall", "global",    "pickle_call", "audit",   "call_edge",
    "static",  "integrity", "native",      "blocked", "exit",
};

// Merges `from`'s sorted token list into `into`'s, keeping it sorted and
// unique.
void MergeTokens(std::vector<std::string>& into,
                 std::vector<std::string>&& from) {
  for (std::string& t : from) {
    auto it = std::lower_bound(into.begin(), into.end(), t);
    if (it == into.end() || *it != t) into.insert(it, std::move(t));
  }
}

}  // namespace

std::string_view FamilyName(Family family) {
  return kFamilyNames[static_cast<size_t>(family)];
}

absl::StatusOr<FamilySet> ParseFamilySet(std::string_view spec) {
  spec = internal::Strip(spec);
  if (spec == "all") return FamilySet::All();
  uint32_t bits = 0;
  for (std::string_view part : internal::Split(spec, ',')) {
    part = internal::Strip(part);
    auto it = std::find(kFamilyNames.begin(), kFamilyNames.end(), part);
    if (it == kFamilyNames.end()) {
      return absl::InvalidArgumentError(
          Cat("unknown feature family \"", part,
              "\" (known: ", Join(kFamilyNames, ", "), ", or all)"));
    }
    bits |= 1u << (it - kFamilyNames.begin());
  }
  return FamilySet::FromBits(bits);
}

uint64_t Fnv1a64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint32_t FeatureIndex(Family family, std::string_view token) {
  return static_cast<uint32_t>(family) * kIndicesPerFamily +
         static_cast<uint32_t>(Fnv1a64(token) & (kIndicesPerFamily - 1));
}

Family FamilyOfIndex(uint32_t index) {
  return static_cast<Family>(index / kIndicesPerFamily);
}

SparseVector::SparseVector(std::vector<Feature> entries) {
  std::sort(
      entries.begin(), entries.end(),
      [](const Feature& a, const Feature& b) { return a.index < b.index; });
  for (Feature& f : entries) {
    std::sort(f.tokens.begin(), f.tokens.end());
    f.tokens.erase(std::unique(f.tokens.begin(), f.tokens.end()),
                   f.tokens.end());
    if (!entries_.empty() && entries_.back().index == f.index) {
      entries_.back().value += f.value;
      MergeTokens(entries_.back().tokens, std::move(f.tokens));
    } else {
      entries_.push_back(std::move(f));
    }
  }
  std::erase_if(entries_, [](const Feature& f) {
    return f.value == 0 || !std::isfinite(f.value);
  });
}

const Feature* SparseVector::Find(uint32_t index) const {
  auto it = std::lower_bound(
      entries_.begin(), entries_.end(), index,
      [](const Feature& f, uint32_t i) { return f.index < i; });
  return it != entries_.end() && it->index == index ? &*it : nullptr;
}

double SparseVector::Get(uint32_t index) const {
  const Feature* f = Find(index);
  return f == nullptr ? 0 : f->value;
}

std::string SparseVector::Name(uint32_t index) const {
  std::string_view family = index < kDimension
                                ? FamilyName(FamilyOfIndex(index))
                                : std::string_view("?");
  const Feature* f = Find(index);
  if (f == nullptr || f->tokens.empty()) {
    return Cat(family, "/#", index % kIndicesPerFamily);
  }
  return Cat(family, "/", Join(f->tokens, " | "));
}

double SparseVector::SquaredNorm() const {
  double sum = 0;
  for (const Feature& f : entries_) sum += f.value * f.value;
  return sum;
}

double SparseVector::SquaredDistance(const SparseVector& a,
                                     const SparseVector& b) {
  double sum = 0;
  size_t i = 0, j = 0;
  const auto& x = a.entries_;
  const auto& y = b.entries_;
  while (i < x.size() || j < y.size()) {
    double d;
    if (j == y.size() || (i < x.size() && x[i].index < y[j].index)) {
      d = x[i++].value;
    } else if (i == x.size() || y[j].index < x[i].index) {
      d = y[j++].value;
    } else {
      d = x[i++].value - y[j++].value;
    }
    sum += d * d;
  }
  return sum;
}

}  // namespace dynahug::features
