// RopeInverseFrequencies mirrors Hugging Face transformers (modeling_rope_utils.py:
// _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters and
// _compute_llama3_parameters). Those compute in float32 tensors, so every step here is a
// float operation in the same order; pow is evaluated in double and rounded once, which
// is what a correctly rounded powf gives.
#include <cmath>
#include <vector>

#include "tokenmill/backend/backend.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

// inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim))
std::vector<float> DefaultInverseFrequencies(float theta, int dim) {
  std::vector<float> inv_freq(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float power =
        static_cast<float>(std::pow(static_cast<double>(theta), static_cast<double>(exponent)));
    inv_freq[i] = 1.0f / power;
  }
  return inv_freq;
}

void ApplyLlama3Scaling(const RopeParams& p, std::vector<float>* inv_freq) {
  const float factor = p.factor;
  const float low_freq_factor = p.low_freq_factor;
  const float high_freq_factor = p.high_freq_factor;
  const float old_context_len = static_cast<float>(p.original_max_position_embeddings);
  // Python floats (double), which torch casts to float when comparing with a float32 tensor.
  const float low_freq_wavelen =
      static_cast<float>(static_cast<double>(p.original_max_position_embeddings) / low_freq_factor);
  const float high_freq_wavelen = static_cast<float>(
      static_cast<double>(p.original_max_position_embeddings) / high_freq_factor);
  const float two_pi = static_cast<float>(2.0 * M_PI);
  for (float& f : *inv_freq) {
    const float wavelen = two_pi / f;
    // torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    const float llama = wavelen > low_freq_wavelen ? f / factor : f;
    const float smooth =
        (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
    const float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = is_medium ? smoothed : llama;
  }
}

}  // namespace

std::vector<float> RopeInverseFrequencies(const RopeParams& params) {
  const int dim = params.rotary_dim > 0 ? params.rotary_dim : params.head_dim;
  TM_CHECK(dim > 0 && dim % 2 == 0, "rotary dim ", dim, " must be positive and even");
  std::vector<float> inv_freq = DefaultInverseFrequencies(params.theta, dim);
  switch (params.scaling) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (float& f : inv_freq) f /= params.factor;
      break;
    case RopeScalingType::kLlama3:
      ApplyLlama3Scaling(params, &inv_freq);
      break;
  }
  return inv_freq;
}

}  // namespace tokenmill
