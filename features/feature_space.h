// The feature space every trace is mapped into: a fixed, versioned space of
// named features split into families, with indices computed by hashing the
// readable token of each feature (so tokens never seen in training still get
// an index) and the readable token kept beside the index (so a verdict can
// name the features that drove it).
//
// Layout: the space is kFamilyCount blocks of 2^kBitsPerFamily indices, one
// block per Family, in the order of the enum. A token t of family f lands at
//   f * 2^kBitsPerFamily + (Fnv1a64(t) mod 2^kBitsPerFamily).
// Families therefore never collide with each other, and a family subset is an
// index range. Two tokens of one family may collide; a SparseVector entry
// keeps every token that landed on it (see features/README.md for the
// expected collision rate).
//
// Everything here is pure and thread-safe.
#ifndef DYNAHUG_FEATURES_FEATURE_SPACE_H_
#define DYNAHUG_FEATURES_FEATURE_SPACE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace dynahug::features {

// Bumped whenever a token's spelling, the hash, the layout, the weighting or
// the scaling changes: vectors of different versions are not comparable, and
// a model bundle records the version it was trained with.
inline constexpr uint32_t kFeatureSpaceVersion = 2;

// Feature families. The numeric values are part of the layout (and of the
// version): append new families at the end.
enum class Family : uint8_t {
  kSyscall = 0,     // syscall presence and frequency (DynaHug's original set)
  kGlobal = 1,      // globals the unpickler resolved, real or stub
  kPickleCall = 2,  // calls made by pickle opcodes, with argument types
  kAudit = 3,       // PEP 578 audit events, normalised, with provenance
  kCallEdge = 4,    // Python call-graph edges (caller -> callee)
  kStatic = 5,      // static statistics of every pickle stream and member
  kIntegrity = 6,   // post-load integrity findings (sandbox, loader, state)
  kNative = 7,      // native events (ctypes, mmap, dlopen)
  kBlocked = 8,     // actions the sandbox denied
  kExit = 9,        // how the child ended and what the load returned
};
inline constexpr int kFamilyCount = 10;

// log2 of the number of indices per family.
inline constexpr int kBitsPerFamily = 20;
inline constexpr uint32_t kIndicesPerFamily = uint32_t{1} << kBitsPerFamily;
// Number of indices of the whole space; every index is < kDimension.
inline constexpr uint32_t kDimension = kFamilyCount * kIndicesPerFamily;

// A set of families, one bit per Family value.
class FamilySet {
 public:
  constexpr FamilySet() = default;
  static constexpr FamilySet All() {
    return FamilySet((1u << kFamilyCount) - 1);
  }
  static constexpr FamilySet Of(std::initializer_list<Family> families) {
    uint32_t bits = 0;
    for (Family f : families) bits |= 1u << static_cast<int>(f);
    return FamilySet(bits);
  }
  // Bits outside the known families are dropped.
  static constexpr FamilySet FromBits(uint32_t bits) {
    return FamilySet(bits & All().bits_);
  }
  // DynaHug parity ablation: syscall presence and frequency only.
  static constexpr FamilySet SyscallOnly() { return Of({Family::kSyscall}); }
  // Everything computable without running the file: kStatic only.
  static constexpr FamilySet StaticOnly() { return Of({Family::kStatic}); }

  constexpr bool Contains(Family f) const {
    return (bits_ >> static_cast<int>(f)) & 1u;
  }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr uint32_t bits() const { return bits_; }
  friend constexpr bool operator==(FamilySet, FamilySet) = default;

 private:
  constexpr explicit FamilySet(uint32_t bits) : bits_(bits) {}
  uint32_t bits_ = 0;
};

// Stable family name ("syscall", "global", "pickle_call", "audit",
// "call_edge", "static", "integrity", "native", "blocked", "exit"), used on
// command lines and in model bundles.
std::string_view FamilyName(Family family);

// Parses a comma-separated list of family names, or "all". Error names the
// bad element: `unknown feature family "sycall" (known: syscall, ...)`.
absl::StatusOr<FamilySet> ParseFamilySet(std::string_view spec);

// 64-bit FNV-1a of `data` (offset basis 0xcbf29ce484222325, prime
// 0x100000001b3). Stable across platforms, compilers and runs, unlike
// std::hash.
uint64_t Fnv1a64(std::string_view data);

// Index of `token` in `family`'s block (see the file comment).
uint32_t FeatureIndex(Family family, std::string_view token);

// Family whose block holds `index`. Precondition: index < kDimension.
Family FamilyOfIndex(uint32_t index);

// One non-zero coordinate of a feature vector.
struct Feature {
  uint32_t index = 0;
  double value = 0;
  // The readable tokens that landed on `index` in this vector, sorted; more
  // than one only on a hash collision. Empty when names were not requested.
  std::vector<std::string> tokens;
};

// A sparse vector of the feature space: entries sorted by index, indices
// unique, values non-zero and finite.
class SparseVector {
 public:
  SparseVector() = default;
  // Takes entries in any order; duplicates of an index are merged (values
  // added, token lists united); zero values are dropped.
  explicit SparseVector(std::vector<Feature> entries);

  const std::vector<Feature>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  // The entry at `index`, or nullptr.
  const Feature* Find(uint32_t index) const;
  // Value at `index` (0 when absent).
  double Get(uint32_t index) const;
  // Value of `token` in `family` (0 when absent). A collision partner of
  // `token` counts too: this reads the index, not the name.
  double Get(Family family, std::string_view token) const {
    return Get(FeatureIndex(family, token));
  }
  // Human-readable name of `index`: "<family>/<token>", tokens of a
  // collision joined by " | ", or "<family>/#<offset>" without tokens.
  std::string Name(uint32_t index) const;

  double SquaredNorm() const;
  // ||a - b||^2, the distance an RBF kernel sees.
  static double SquaredDistance(const SparseVector& a, const SparseVector& b);

 private:
  std::vector<Feature> entries_;
};

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_FEATURE_SPACE_H_
