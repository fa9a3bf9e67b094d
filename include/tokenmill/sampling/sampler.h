// Per-sequence sampler: turns one row of logits into the next token.
//
// Pipeline, in vLLM's order: repetition penalty (prompt + generated tokens) -> frequency and
// presence penalties (generated tokens) -> temperature -> top-k -> top-p -> min-p -> draw.
// Greedy requests (SamplingParams::IsGreedy) take the argmax of the penalised logits, ties
// to the lowest token id.
//
// Randomness: draw i of a sequence (i = number of tokens accepted so far) uses the uniform
// PhiloxUniform(seed, i) and inverse-CDF sampling over the surviving tokens in token id order.
// Same seed and same logits => same tokens, whatever the batch, the step timing or a
// preemption in between. An unseeded request gets a random seed at creation (seed()).
//
// Log-probs (params.logprobs = n > 0) follow vLLM's default ("raw logprobs"): log-softmax of
// the logits passed in, before penalties, temperature and filtering.
//
// Thread-compatible: one thread uses a Sampler at a time (the engine's step loop); distinct
// Samplers are independent. Sample() reuses its vocabulary-sized buffers across calls.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "tokenmill/sampling/candidates.h"
#include "tokenmill/sampling/sampling_params.h"

namespace tokenmill {

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;  // natural log
};

struct SampledToken {
  int32_t token_id = -1;
  // Filled only when params.logprobs > 0, from the raw distribution (see above).
  float logprob = 0.0f;  // of token_id
  int32_t rank = 0;      // tokens with a raw logit >= token_id's (vLLM)
  // The params.logprobs most likely tokens (fewer if fewer are unmasked), most likely
  // first, ties to the lower id.
  std::vector<TokenLogprob> top_logprobs;
};

class Sampler {
 public:
  // Validates `params` (InvalidArgument naming the field). `prompt_token_ids` feed the
  // repetition penalty; ids outside the vocabulary are ignored when sampling.
  static absl::StatusOr<Sampler> Create(const SamplingParams& params,
                                        std::span<const int32_t> prompt_token_ids);

  // Chooses the next token from `logits` (one per vocabulary entry, fp32). Does not record
  // it: call Accept() with the token that the sequence actually continues with. Requires a
  // non-empty `logits` with at least one finite value (-inf masks a token; NaN counts as
  // -inf); if none is finite, returns token 0.
  SampledToken Sample(std::span<const float> logits);
  // Appends a generated token: it now counts for the penalties, and the next Sample() uses
  // the next random draw.
  void Accept(int32_t token_id);
  // Sample() then Accept() of the sampled token.
  SampledToken SampleAndAccept(std::span<const float> logits);

  const SamplingParams& params() const { return params_; }
  // The request's seed, or the one drawn for it (report it so a run can be replayed).
  uint64_t seed() const { return seed_; }
  int num_generated_tokens() const { return num_generated_tokens_; }
  // How often `token_id` has been accepted.
  int GeneratedCount(int32_t token_id) const;

  // Applies this sequence's penalties to `logits` in place: the first stage of Sample().
  // Repetition (HF/vLLM: logit > 0 divided by the penalty, else multiplied) once per token
  // seen in the prompt or the output; then, for generated tokens only (OpenAI),
  // logit -= frequency_penalty * count + presence_penalty.
  void ApplyPenalties(std::span<float> logits) const;

 private:
  Sampler(const SamplingParams& params, uint64_t seed, std::span<const int32_t> prompt);

  bool HasPenalties() const;
  // Calls fn(token, penalised logit) once for each token a penalty touches.
  void ForEachPenalised(std::span<const float> logits,
                        absl::FunctionRef<void(int32_t, float)> fn) const;
  int32_t SampleGreedy(std::span<const float> logits);
  int32_t SampleRandom(std::span<const float> logits, double uniform);

  SamplingParams params_;
  uint64_t seed_ = 0;
  int num_generated_tokens_ = 0;
  std::vector<int32_t> prompt_tokens_;  // sorted, unique
  absl::flat_hash_map<int32_t, int32_t> generated_counts_;
  // Scratch reused across steps.
  std::vector<float> penalised_;
  CandidateSet candidates_;
};

// Log-softmax facts about `logits` for `token_id` and the `n` most likely tokens (ties to
// the lower id). NaN counts as -inf. Exposed for the engine's prompt-logprobs path and tests.
void ComputeLogprobs(std::span<const float> logits, int32_t token_id, int n, SampledToken* out);

}  // namespace tokenmill
