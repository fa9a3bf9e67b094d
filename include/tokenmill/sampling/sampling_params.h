// Per-request sampling parameters (OpenAI / vLLM semantics).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tokenmill {

struct SamplingParams {
  float temperature = 1.0f;        // 0: greedy
  int top_k = 0;                   // 0 or -1: off
  float top_p = 1.0f;              // 1: off
  float min_p = 0.0f;              // 0: off
  float repetition_penalty = 1.0f; // HF/vLLM: prompt and generated tokens; 1: off
  float frequency_penalty = 0.0f;  // OpenAI: generated tokens only
  float presence_penalty = 0.0f;   // OpenAI: generated tokens only
  std::optional<uint64_t> seed;    // same seed, same output
  int max_tokens = 16;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int logprobs = 0;                // top-n log-probs to return per token (0: none)

  // InvalidArgument naming the field for values outside their domain.
  absl::Status Validate() const;
};

}  // namespace tokenmill
