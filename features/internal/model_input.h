// The SVM input of one vector, shared by the trainer and the detector so
// that training and scanning build it the same way. Not API.
//
//   raw   = SplitKnown(vector, known)         known entries + novelty
//   input = ScaleInput(raw, cluster scales)   scaled known part, then the
//                                             novelty features at
//                                             kNoveltyIndexBase + k
//
// Thread safety: pure functions.
#ifndef DYNAHUG_FEATURES_INTERNAL_MODEL_INPUT_H_
#define DYNAHUG_FEATURES_INTERNAL_MODEL_INPUT_H_

#include <array>
#include <cstdint>
#include <vector>

#include "features/novelty.h"
#include "features/ocsvm.h"

namespace dynahug::features::internal {

// A vector split by a vocabulary: the entries it knows (sorted by index,
// unscaled) and the novelty of the others.
struct RawInput {
  std::vector<InputEntry> known;
  Novelty novelty;
};

template <typename Known>
RawInput SplitKnown(const GroupedVector& v, const Known& known) {
  RawInput out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (known(v.index[i])) {
      out.known.push_back({v.index[i], v.value[i]});
    } else {
      out.novelty.mass[v.group[i]] += v.value[i];
      ++out.novelty.count[v.group[i]];
    }
  }
  return out;
}

// Per-feature transforms of one cluster: `scale[i]` multiplies vocabulary
// index `vocabulary[i]` (then each family's block is scaled to unit L2
// norm); novelty feature k becomes NoveltySurprisal among its reference row
// times `novelty_scale[k]`.
struct ScaleView {
  const uint32_t* vocabulary = nullptr;
  const double* scale = nullptr;
  size_t size = 0;
  const double* novelty_scale = nullptr;  // kNoveltyFeatureCount values
  // kNoveltyFeatureCount rows of `reference_size` sorted values.
  const double* novelty_reference = nullptr;
  size_t reference_size = 0;
};

// The scaled input. Known entries missing from the vocabulary are dropped
// (SplitKnown with a predicate within the vocabulary never makes any).
InputVector ScaleInput(const RawInput& raw, const ScaleView& scales);

}  // namespace dynahug::features::internal

#endif  // DYNAHUG_FEATURES_INTERNAL_MODEL_INPUT_H_
