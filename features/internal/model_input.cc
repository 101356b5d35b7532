#include "features/internal/model_input.h"

#include <algorithm>
#include <cmath>

namespace dynahug::features::internal {

InputVector ScaleInput(const RawInput& raw, const ScaleView& scales) {
  InputVector out;
  out.reserve(raw.known.size() + kNoveltyFeatureCount);
  const uint32_t* begin = scales.vocabulary;
  const uint32_t* end = scales.vocabulary + scales.size;
  const uint32_t* it = begin;
  for (const InputEntry& e : raw.known) {
    // raw.known is sorted: search forward from the last position.
    it = std::lower_bound(it, end, e.index);
    if (it == end) break;
    if (*it != e.index) continue;
    const double v = e.value * scales.scale[it - begin];
    if (v != 0) out.push_back({e.index, v});
  }
  // Each family's block to unit L2 norm: a family contributes at most 2 to
  // a squared distance however many tokens it has.
  for (size_t b = 0; b < out.size();) {
    const Family f = FamilyOfIndex(out[b].index);
    size_t e = b;
    double norm2 = 0;
    for (; e < out.size() && FamilyOfIndex(out[e].index) == f; ++e) {
      norm2 += out[e].value * out[e].value;
    }
    const double inv = 1 / std::sqrt(norm2);
    for (size_t i = b; i < e; ++i) out[i].value *= inv;
    b = e;
  }
  for (int k = 0; k < kNoveltyFeatureCount; ++k) {
    const double v =
        NoveltySurprisal(scales.novelty_reference + k * scales.reference_size,
                         scales.reference_size, raw.novelty.Feature(k)) *
        scales.novelty_scale[k];
    if (v != 0)
      out.push_back({kNoveltyIndexBase + static_cast<uint32_t>(k), v});
  }
  return out;
}

}  // namespace dynahug::features::internal
