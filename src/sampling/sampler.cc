#include "tokenmill/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "tokenmill/core/status.h"
#include "tokenmill/sampling/philox.h"

namespace tokenmill {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t DrawSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

// Index of the largest value, lowest index on ties; NaN never wins. 0 when nothing is > -inf.
int32_t ArgMax(std::span<const float> values) {
  const float best = MaxLogit(values);
  if (best == kNegInf) return 0;
  return static_cast<int32_t>(std::find(values.begin(), values.end(), best) - values.begin());
}

}  // namespace

absl::StatusOr<Sampler> Sampler::Create(const SamplingParams& params,
                                        std::span<const int32_t> prompt_token_ids) {
  TM_RETURN_IF_ERROR(params.Validate());
  return Sampler(params, params.seed.has_value() ? *params.seed : DrawSeed(), prompt_token_ids);
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed, std::span<const int32_t> prompt)
    : params_(params), seed_(seed) {
  // Only the repetition penalty looks at the prompt; skip the copy when it is off.
  if (params_.repetition_penalty != 1.0f) {
    prompt_tokens_.assign(prompt.begin(), prompt.end());
    std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
    prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()),
                         prompt_tokens_.end());
  }
}

SampledToken Sampler::Sample(std::span<const float> logits) {
  TM_CHECK(!logits.empty(), "Sample() needs logits");
  SampledToken out;
  if (params_.IsGreedy()) {
    out.token_id = SampleGreedy(logits);
  } else {
    out.token_id = SampleRandom(logits, PhiloxUniform(seed_, num_generated_tokens_));
  }
  if (params_.logprobs > 0) ComputeLogprobs(logits, out.token_id, params_.logprobs, &out);
  return out;
}

void Sampler::Accept(int32_t token_id) {
  ++num_generated_tokens_;
  ++generated_counts_[token_id];
}

SampledToken Sampler::SampleAndAccept(std::span<const float> logits) {
  SampledToken out = Sample(logits);
  Accept(out.token_id);
  return out;
}

int Sampler::GeneratedCount(int32_t token_id) const {
  auto it = generated_counts_.find(token_id);
  return it == generated_counts_.end() ? 0 : it->second;
}

int32_t Sampler::SampleGreedy(std::span<const float> logits) {
  if (!HasPenalties()) return ArgMax(logits);
  penalised_.assign(logits.begin(), logits.end());
  ApplyPenalties(penalised_);
  return ArgMax(penalised_);
}

int32_t Sampler::SampleRandom(std::span<const float> logits, double uniform) {
  std::span<const float> values = logits;
  if (HasPenalties()) {
    penalised_.assign(logits.begin(), logits.end());
    ApplyPenalties(penalised_);
    values = penalised_;
  }
  const float max_logit = MaxLogit(values);
  if (max_logit == kNegInf) return 0;                // everything masked: nothing to sample from
  if (std::isinf(max_logit)) return ArgMax(values);  // +inf outweighs everything

  // Temperature scales every logit alike, so top-k may run on the unscaled logits.
  SelectTopK(values, params_.top_k, &candidates_);
  double total = ToWeights(max_logit, 1.0f / params_.temperature, &candidates_);
  if (params_.top_p < 1.0f) total = KeepTopP(params_.top_p, total, &candidates_);
  if (params_.min_p > 0.0f) total = KeepMinP(params_.min_p, &candidates_);
  return DrawCandidate(uniform, total, candidates_);
}

}  // namespace tokenmill
