#include "tokenmill/sampling/sampling_params.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tokenmill {
namespace {

absl::Status Invalid(const char* field, const char* rule, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("SamplingParams.", field, " must be ", rule, ", got ", value));
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  // Comparisons are written so that NaN fails them.
  if (!(temperature >= 0.0f && std::isfinite(temperature))) {
    return Invalid("temperature", ">= 0 and finite", temperature);
  }
  if (top_k < -1) return Invalid("top_k", ">= -1 (0 or -1: off)", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Invalid("top_p", "in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Invalid("min_p", "in [0, 1]", min_p);
  if (!(repetition_penalty > 0.0f && std::isfinite(repetition_penalty))) {
    return Invalid("repetition_penalty", "> 0 and finite", repetition_penalty);
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return Invalid("frequency_penalty", "in [-2, 2]", frequency_penalty);
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return Invalid("presence_penalty", "in [-2, 2]", presence_penalty);
  }
  if (max_tokens < 1) return Invalid("max_tokens", ">= 1", max_tokens);
  if (logprobs < 0 || logprobs > kMaxLogprobs) {
    return Invalid("logprobs", absl::StrCat("in [0, ", kMaxLogprobs, "]").c_str(), logprobs);
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    if (stop_token_ids[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("SamplingParams.stop_token_ids[", i,
                                                     "] must be >= 0, got ", stop_token_ids[i]));
    }
  }
  return absl::OkStatus();
}

bool IsStopToken(const SamplingParams& params, int32_t token_id,
                 std::span<const int32_t> eos_token_ids) {
  if (std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), token_id) !=
      params.stop_token_ids.end()) {
    return true;
  }
  return !params.ignore_eos &&
         std::find(eos_token_ids.begin(), eos_token_ids.end(), token_id) != eos_token_ids.end();
}

}  // namespace tokenmill
