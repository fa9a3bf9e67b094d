// The Llama-family forward pass (Llama 2/3, Mistral, Qwen2), written once in terms of
// Backend ops. One instance per rank; it owns the activation buffers on its backend.
//
// Plan, then run: Forward() hands the step's BatchPlan to the backend once, then every
// layer only runs ops.
//
// Tensor parallelism: given a shard (ShardModel, model/sharding.h) and its rank's
// communicator, the instance holds the rank's slice of the weights, all-reduces the
// partial sums of the row-parallel projections (o_proj, down) and all-gathers the
// vocab-parallel logits, so every rank returns the full logits. All ranks must run
// Forward with the same plans in the same order. Without a communicator (or with a
// one-rank one) the model runs exactly as a single rank: same ops, same bits.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/model/weights.h"
#include "tokenmill/parallel/communicator.h"

namespace tokenmill {

struct LlamaModelOptions {
  int max_num_tokens = 2048;  // most tokens in one step (the batched-token budget)
  int max_num_logits = 256;   // most rows of logits one step may ask for
  // This rank's communicator; required when the model is a shard (config.tp_size > 1),
  // with world_size == tp_size and rank == tp_rank. Not owned; must outlive the model.
  // Host-memory communicators (loopback, tcp) work with any backend (the CPU backend's
  // tensors are used in place, others are staged through host copies); device-memory ones
  // (NCCL) need a backend with a device_stream() they enqueue on (Communicator::stream()).
  Communicator* communicator = nullptr;
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
  // floats, in the plan's order (the whole vocabulary, on every rank). Requires: the KV
  // cache is allocated and the plan's block tables refer to it; plan.num_tokens() <=
  // max_num_tokens. A failed collective fails the step (and breaks the group).
  absl::Status Forward(const BatchPlan& plan, std::vector<float>* logits);

 private:
  // One layer's weights as the backend holds them.
  struct DeviceLayer {
    TensorView attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
  };
  LlamaModel(const ModelConfig& config, Backend* backend, const LlamaModelOptions& options)
      : config_(config), backend_(backend), options_(options), comm_(options.communicator) {}
  absl::Status CheckCommunicator();
  absl::Status UploadWeights(const ModelWeights& weights);
  absl::Status AllocateActivations();
  absl::Status RunLayer(int layer, int num_tokens);
  absl::Status RunGraph(const BatchPlan& plan, std::vector<float>* logits);
  bool is_sharded() const { return config_.tp_size > 1; }
  // Sums `t` (a backend tensor) over the ranks, in place.
  absl::Status AllReduce(const TensorView& t);
  // Gathers the ranks' vocab slices of `local` [rows, tp_vocab_size] into `logits`.
  absl::Status GatherLogits(const TensorView& local, int rows, std::vector<float>* logits);

  ModelConfig config_;
  Backend* backend_;
  LlamaModelOptions options_;
  std::vector<DeviceLayer> layers_;
  TensorView tok_embd_, output_norm_, lm_head_;
  // Activation buffers sized for max_num_tokens rows.
  TensorView residual_, normed_, q_, k_, v_, attn_, proj_, gate_, up_, act_, logits_in_, logits_;
  std::vector<TensorView> allocated_;
  // Tensor parallelism: the communicator, as the backend's collective group, and the
  // logits gather's buffers (device ones only for a device communicator).
  Communicator* comm_ = nullptr;
  std::unique_ptr<CollectiveGroup> group_;
  TensorView gathered_logits_;
  std::vector<float> gather_send_, gather_recv_;
};

}  // namespace tokenmill
