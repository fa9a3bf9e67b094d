// Log-probs of the raw model distribution (vLLM's default logprobs mode).

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "sampling/top_n.h"
#include "sampling/vector_math.h"
#include "tokenmill/sampling/candidates.h"
#include "tokenmill/sampling/sampler.h"

namespace tokenmill {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

using sampling_internal::ExpNonPositive;
using sampling_internal::SumWeights;

}  // namespace

void ComputeLogprobs(std::span<const float> logits, int32_t token_id, int n, SampledToken* out) {
  const float max_logit = MaxLogit(logits);
  double sum = 0.0;
  if (std::isfinite(max_logit)) {
    // Blocks through a small buffer: the exps vectorise, the sum runs on independent chains.
    std::array<float, 256> block;
    for (size_t begin = 0; begin < logits.size(); begin += block.size()) {
      const size_t count = std::min(block.size(), logits.size() - begin);
      for (size_t i = 0; i < count; ++i) {
        block[i] = ExpNonPositive(logits[begin + i] - max_logit);
      }
      sum += SumWeights(std::span(block).first(count));
    }
  }
  // Nothing finite (all masked): every log-prob is -inf.
  const double log_z = max_logit + std::log(sum);
  auto logprob = [&](float v) {
    if (std::isnan(v) || !std::isfinite(max_logit)) return kNegInf;
    return static_cast<float>(v - log_z);
  };

  const float chosen = logits[token_id];
  out->logprob = logprob(chosen);
  int32_t num_at_least = 0;  // vectorises: a count, no branch
  for (float v : logits) num_at_least += v >= chosen;
  out->rank = std::max(num_at_least, 1);

  std::vector<sampling_internal::Scored> top;
  sampling_internal::TopN(logits, n, &top);
  out->top_logprobs.clear();
  for (const auto& s : top) out->top_logprobs.push_back({s.token_id, logprob(s.value)});
}

}  // namespace tokenmill
