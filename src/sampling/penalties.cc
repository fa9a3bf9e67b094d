// The penalty stage of Sampler: sparse, since only tokens already seen are touched.

#include <algorithm>

#include "tokenmill/sampling/sampler.h"

namespace tokenmill {
namespace {

// HF RepetitionPenaltyLogitsProcessor / vLLM: shrink a positive logit, grow a negative one.
float RepetitionPenalised(float logit, float penalty) {
  return logit > 0.0f ? logit / penalty : logit * penalty;
}

}  // namespace

bool Sampler::HasPenalties() const {
  return params_.repetition_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
         params_.presence_penalty != 0.0f;
}

void Sampler::ForEachPenalised(std::span<const float> logits,
                               absl::FunctionRef<void(int32_t, float)> fn) const {
  const auto vocab_size = static_cast<int32_t>(logits.size());
  const float repetition = params_.repetition_penalty;
  // Each token is penalised once for repetition, whether it is in the prompt, the output
  // or both (vLLM's prompt_mask | output_mask), then by count and presence in the output.
  if (repetition != 1.0f) {
    for (int32_t token : prompt_tokens_) {
      if (token < 0 || token >= vocab_size || generated_counts_.contains(token)) continue;
      fn(token, RepetitionPenalised(logits[token], repetition));
    }
  }
  for (const auto& [token, count] : generated_counts_) {
    if (token < 0 || token >= vocab_size) continue;
    float value = logits[token];
    if (repetition != 1.0f) value = RepetitionPenalised(value, repetition);
    value -= params_.frequency_penalty * static_cast<float>(count);
    value -= params_.presence_penalty;
    fn(token, value);
  }
}

void Sampler::ApplyPenalties(std::span<float> logits) const {
  if (!HasPenalties()) return;
  ForEachPenalised(logits, [&](int32_t token, float value) { logits[token] = value; });
}

}  // namespace tokenmill
