// The n most likely entries of a logit row, for top-k and top log-probs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tokenmill::sampling_internal {

struct Scored {
  float value;
  int32_t token_id;
};

// Strict weak order: more likely first (larger value, then lower token id).
inline bool MoreLikely(const Scored& a, const Scored& b) {
  return a.value > b.value || (a.value == b.value && a.token_id < b.token_id);
}

// The min(n, number of values > -inf) most likely entries of `values` (NaN counts as -inf),
// most likely first, into `out`. One pass; blocks whose maximum cannot enter the current
// top n are skipped with a vectorised max, so for n << size this costs little more than
// reading the row. n <= 0: empty.
void TopN(std::span<const float> values, int n, std::vector<Scored>* out);

}  // namespace tokenmill::sampling_internal
