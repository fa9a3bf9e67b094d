// Per-request sampling parameters (OpenAI / vLLM semantics).
//
// Processing order (vLLM): penalties -> temperature -> top-k -> top-p -> min-p -> sample.
// Plain data: copy freely; Validate() once where the request enters (api/ or the CLI).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tokenmill {

// Temperatures below this are greedy (argmax), as in vLLM (_SAMPLING_EPS).
inline constexpr float kGreedyTemperature = 1e-5f;
// Most top log-probs a request may ask for (vLLM's default max_logprobs).
inline constexpr int kMaxLogprobs = 20;

struct SamplingParams {
  float temperature = 1.0f;             // 0 (or < kGreedyTemperature): greedy; >= 0, finite
  int top_k = 0;                        // 0 or -1: off; else keep the k most likely tokens
  float top_p = 1.0f;                   // (0, 1]; 1: off. Smallest set with mass >= top_p
  float min_p = 0.0f;                   // [0, 1]; 0: off. Drop p < min_p * max p
  float repetition_penalty = 1.0f;      // > 0; HF/vLLM: prompt and generated tokens; 1: off
  float frequency_penalty = 0.0f;       // [-2, 2]; OpenAI: generated tokens only, times count
  float presence_penalty = 0.0f;        // [-2, 2]; OpenAI: generated tokens only, once
  std::optional<uint64_t> seed;         // same seed, same output; unset: random per request
  int max_tokens = 16;                  // >= 1
  std::vector<int32_t> stop_token_ids;  // each >= 0; finish as soon as one is generated
  bool ignore_eos = false;              // keep going past the model's EOS tokens
  int logprobs = 0;                     // top-n log-probs to return per token (0: none), <= 20

  // InvalidArgument naming the field for values outside their domain.
  absl::Status Validate() const;
  // True when sampling reduces to argmax (temperature below kGreedyTemperature).
  bool IsGreedy() const { return temperature < kGreedyTemperature; }
};

// True when `token_id` ends the sequence: one of params.stop_token_ids, or one of the model's
// `eos_token_ids` unless params.ignore_eos. (max_tokens is the caller's count.)
bool IsStopToken(const SamplingParams& params, int32_t token_id,
                 std::span<const int32_t> eos_token_ids);

}  // namespace tokenmill
