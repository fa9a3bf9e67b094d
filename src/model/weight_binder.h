// Internal to model/: binds named tensors of any checkpoint format to ModelWeights,
// checking every shape against the config and converting norms and biases to F32.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tokenmill/model/weights.h"

namespace tokenmill::model_internal {

// One tensor as a checkpoint stores it.
struct SourceTensor {
  std::string file;            // path of the file holding it, for messages
  std::string dtype_name;      // as the format names it ("F32", "Q4_K", "F64"...)
  std::optional<DType> dtype;  // empty when tokenmill cannot compute with it
  std::vector<int64_t> dims;   // row-major, outermost first
  const uint8_t* data = nullptr;
};

// Returns the tensor, or nullopt when the checkpoint has no tensor of that name.
using TensorLookup = std::function<std::optional<SourceTensor>(const std::string& name)>;

// How a format names the tensors of a Llama-family model. Layer tensors are
// layer_prefix + <index> + suffix.
struct WeightNames {
  std::string tok_embd, output_norm, lm_head;
  std::string layer_prefix;
  std::string attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
};
const WeightNames& GgufWeightNames();
const WeightNames& HfWeightNames();

// Fills model->weights from `lookup` following model->config. `where` names the
// checkpoint in "not found" errors. A missing lm_head means tied embeddings (the config
// is updated). Matrices stay in place (copied only when misaligned for their dtype);
// norms and biases are converted to F32 into model->owned.
absl::Status BindWeights(const TensorLookup& lookup, const std::string& where,
                         const WeightNames& names, LoadedModel* model);

}  // namespace tokenmill::model_internal
