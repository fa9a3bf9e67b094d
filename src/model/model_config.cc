#include "tokenmill/model/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tokenmill {
namespace {

// Upper bounds far above any real Llama-family model; they keep a hostile config from
// overflowing size arithmetic or asking for absurd allocations downstream.
constexpr int kMaxVocab = 1 << 24;
constexpr int kMaxHidden = 1 << 17;
constexpr int kMaxIntermediate = 1 << 20;
constexpr int kMaxLayers = 1024;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 1024;
constexpr int kMaxPositions = 1 << 24;

}  // namespace

absl::Status ModelConfig::Validate() const {
  const std::string who =
      name.empty() ? std::string("model config: ") : absl::StrCat("model config '", name, "': ");
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(who, parts...));
  };
  struct Range {
    const char* field;
    int value, max;
  };
  for (const Range& r :
       {Range{"vocab_size", vocab_size, kMaxVocab}, Range{"hidden_size", hidden_size, kMaxHidden},
        Range{"intermediate_size", intermediate_size, kMaxIntermediate},
        Range{"num_hidden_layers", num_layers, kMaxLayers},
        Range{"num_attention_heads", num_heads, kMaxHeads},
        Range{"num_key_value_heads", num_kv_heads, kMaxHeads},
        Range{"head_dim", head_dim, kMaxHeadDim},
        Range{"max_position_embeddings", max_position_embeddings, kMaxPositions}}) {
    if (r.value <= 0 || r.value > r.max) {
      return bad(r.field, " = ", r.value, " is out of range [1, ", r.max, "]");
    }
  }
  if (num_heads % num_kv_heads != 0) {
    return bad("num_attention_heads (", num_heads, ") is not a multiple of num_key_value_heads (",
               num_kv_heads, ")");
  }
  if (head_dim % 2 != 0) return bad("head_dim = ", head_dim, " must be even for RoPE");
  if (static_cast<int64_t>(num_heads) * head_dim > 4 * static_cast<int64_t>(hidden_size)) {
    return bad("num_attention_heads * head_dim = ", num_heads * head_dim,
               " is implausible for hidden_size ", hidden_size);
  }
  if (!(rms_norm_eps > 0.0f) || !std::isfinite(rms_norm_eps) || rms_norm_eps > 1.0f) {
    return bad("rms_norm_eps = ", rms_norm_eps, " must be in (0, 1]");
  }
  if (!(rope.theta > 0.0f) || !std::isfinite(rope.theta)) {
    return bad("rope_theta = ", rope.theta, " must be positive");
  }
  if (rope.head_dim != head_dim || rope.rotary_dim <= 0 || rope.rotary_dim > head_dim ||
      rope.rotary_dim % 2 != 0) {
    return bad("RoPE dimensions (head_dim ", rope.head_dim, ", rotary_dim ", rope.rotary_dim,
               ") do not fit head_dim ", head_dim);
  }
  if (rope.scaling != RopeScalingType::kNone &&
      !(rope.factor > 0.0f && std::isfinite(rope.factor))) {
    return bad("rope_scaling factor = ", rope.factor, " must be positive");
  }
  if (rope.scaling == RopeScalingType::kLlama3 &&
      (!(rope.low_freq_factor > 0.0f) || !(rope.high_freq_factor > rope.low_freq_factor) ||
       rope.original_max_position_embeddings <= 0)) {
    return bad("llama3 rope_scaling needs 0 < low_freq_factor (", rope.low_freq_factor,
               ") < high_freq_factor (", rope.high_freq_factor,
               ") and original_max_position_embeddings > 0 (",
               rope.original_max_position_embeddings, ")");
  }
  if (sliding_window < 0) return bad("sliding_window = ", sliding_window, " must be >= 0");
  if (bos_token_id < -1 || bos_token_id >= vocab_size) {
    return bad("bos_token_id ", bos_token_id, " is outside the vocabulary of ", vocab_size);
  }
  for (int id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return bad("eos_token_id ", id, " is outside the vocabulary of ", vocab_size);
    }
  }
  return absl::OkStatus();
}

int64_t ModelConfig::NumParameters() const {
  const int64_t hidden = hidden_size;
  const int64_t q_dim = static_cast<int64_t>(num_heads) * head_dim;
  const int64_t kv_dim = static_cast<int64_t>(num_kv_heads) * head_dim;
  int64_t per_layer = 2 * hidden                         // attention and ffn norms
                      + hidden * (q_dim + 2 * kv_dim)    // wq, wk, wv
                      + q_dim * hidden                   // wo
                      + 3 * hidden * intermediate_size;  // gate, up, down
  if (attention_bias) per_layer += q_dim + 2 * kv_dim;
  const int64_t embeddings = static_cast<int64_t>(vocab_size) * hidden;
  return embeddings * (tie_word_embeddings ? 1 : 2) + hidden + num_layers * per_layer;
}

}  // namespace tokenmill
