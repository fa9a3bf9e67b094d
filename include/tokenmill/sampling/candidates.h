// The filtering stages of the sampler, as functions over a candidate set. Sampler strings
// them together; they are public so that tests and other samplers (the CUDA one checks
// against them) can use each stage alone.
//
// A CandidateSet holds tokens in ascending token id order, and every stage keeps that order,
// so the final draw walks the survivors by id: deterministic, and cheap to reproduce on a
// GPU (a filter and a prefix sum). Before ToWeights() a value is a logit; after, a weight
// exp((logit - max) / T) in [0, 1]. "More likely" means a larger value, ties to the lower
// token id. Costs are for a vocabulary of n tokens; none sorts the whole vocabulary.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tokenmill {

struct CandidateSet {
  std::vector<int32_t> token_ids;  // ascending
  std::vector<float> values;       // same length

  size_t size() const { return token_ids.size(); }
  bool empty() const { return token_ids.empty(); }
  void clear() {
    token_ids.clear();
    values.clear();
  }
};

// Largest value, ignoring NaN; -inf when nothing is larger. Vectorised.
float MaxLogit(std::span<const float> logits);

// Every token. Masked ones (-inf, NaN) stay, and get weight 0 in ToWeights(): no draw or
// filter ever picks a zero weight. O(n), vectorised copy.
void SelectAll(std::span<const float> logits, CandidateSet* out);

// The k most likely tokens with a logit > -inf (fewer if fewer are), ties to the lower id.
// k <= 0 or k >= n selects all. One pass with a heap of k that skips most of the row
// (nth_element for k > 1024).
void SelectTopK(std::span<const float> logits, int k, CandidateSet* out);

// Turns logits into weights exp((logit - max_logit) * inv_temperature), underflow to 0.
// Requires max_logit finite and >= every value. Returns the sum of the weights. Vectorised
// exp, relative error < 3e-7.
double ToWeights(float max_logit, float inv_temperature, CandidateSet* candidates);

// Nucleus: keeps the smallest set of most likely candidates whose weight is >= top_p of
// `total` (a candidate stays while the mass of the more likely ones is < top_p * total; the
// most likely always stays). O(n): a histogram of weights finds the boundary, and only the
// candidates in the boundary bucket are ordered. Returns the kept weight. Requires weights.
double KeepTopP(float top_p, double total, CandidateSet* candidates);

// Drops candidates whose weight is below min_p times the largest weight. Returns the kept
// weight. Requires weights. O(n).
double KeepMinP(float min_p, CandidateSet* candidates);

// Inverse CDF in id order: the first candidate at which the running weight exceeds
// uniform * total, uniform in [0, 1). Falls back to the last candidate with non-zero weight
// when rounding leaves the running sum short. Requires a non-empty set.
int32_t DrawCandidate(double uniform, double total, const CandidateSet& candidates);

}  // namespace tokenmill
