// The Llama-family forward pass (Llama 2/3, Mistral, Qwen2), written once in terms of
// Backend ops. One instance per rank; it owns the activation buffers on its backend.
//
// Plan, then run: Forward() hands the step's BatchPlan to the backend once, then every
// layer only runs ops. With tensor parallelism (`shard`), the instance holds its rank's
// slice of the weights and calls the communicator after the row-parallel projections.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/model/weights.h"

namespace tokenmill {

struct LlamaModelOptions {
  int max_num_tokens = 2048;  // most tokens in one step (the batched-token budget)
  int max_num_logits = 256;   // most rows of logits one step may ask for
};

class LlamaModel {
 public:
  // Uploads the weights of `model` to `backend` and allocates activation buffers.
  // `model` and `backend` must outlive the LlamaModel. The caller allocates the KV cache
  // on the backend (see KvSpec()).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(const LoadedModel& model,
                                                            Backend* backend,
                                                            const LlamaModelOptions& options);
  ~LlamaModel();

  const ModelConfig& config() const { return config_; }
  // KV-cache geometry for `num_blocks` blocks of `block_size` tokens.
  KvCacheSpec KvSpec(int num_blocks, int block_size) const;

  // Runs one step. On success `logits` holds plan.logits_rows.size() rows of vocab_size
  // floats, in the plan's order. Requires: the KV cache is allocated and the plan's
  // block tables refer to it; plan.num_tokens() <= max_num_tokens.
  absl::Status Forward(const BatchPlan& plan, std::vector<float>* logits);

 private:
  // One layer's weights as the backend holds them.
  struct DeviceLayer {
    TensorView attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
  };
  LlamaModel(const ModelConfig& config, Backend* backend, const LlamaModelOptions& options)
      : config_(config), backend_(backend), options_(options) {}
  absl::Status UploadWeights(const ModelWeights& weights);
  absl::Status AllocateActivations();
  void RunLayer(int layer, int num_tokens);

  ModelConfig config_;
  Backend* backend_;
  LlamaModelOptions options_;
  std::vector<DeviceLayer> layers_;
  TensorView tok_embd_, output_norm_, lm_head_;
  // Activation buffers sized for max_num_tokens rows.
  TensorView residual_, normed_, q_, k_, v_, attn_, proj_, gate_, up_, act_, logits_in_, logits_;
  std::vector<TensorView> allocated_;
};

}  // namespace tokenmill
