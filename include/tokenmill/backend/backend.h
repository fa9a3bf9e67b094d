// The op interface every backend implements (CPU reference, CUDA). The model graph in
// model/ is written once against it.
//
// Plan, then run: PlanStep() turns the step's ragged batch into attention metadata once;
// every op of every layer then only runs. Ops do not return a Status: a backend records
// the first failure (sticky) and Finish() reports it, so a failed step fails its requests
// and the graph code stays readable.
//
// Tensors are TensorViews whose bytes the backend can read: for the CPU backend, host
// memory; for CUDA, device memory returned by Allocate()/UploadWeight().
//
// Thread-safety: one backend instance is driven by one thread at a time (one rank).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tokenmill/core/tensor.h"

namespace tokenmill {

// One sequence's slice of a step's ragged batch.
struct BatchSequence {
  int32_t query_start = 0;       // first row of this sequence in the flattened token dim
  int32_t num_query_tokens = 0;  // rows this step (prefill chunk length, or 1 for decode)
  int32_t context_len = 0;       // tokens in the KV cache after this step (cached + new)
  std::vector<int32_t> block_table;  // physical block ids; covers ceil(context_len/block_size)
};

// A step's batch as the engine describes it (host memory). The new tokens of a sequence
// occupy positions [context_len - num_query_tokens, context_len).
struct BatchPlan {
  std::vector<int32_t> token_ids;  // [num_tokens], flattened over sequences
  std::vector<int32_t> positions;  // [num_tokens]
  std::vector<BatchSequence> sequences;
  std::vector<int32_t> logits_rows;  // token rows whose logits are computed, in output order
  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
};

// Geometry of the paged KV cache. Per layer: K and V each [num_blocks, block_size,
// num_kv_heads, head_dim] in `dtype` (F32, F16 or BF16; attention math stays fp32).
struct KvCacheSpec {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;
  size_t BytesPerToken() const {
    return static_cast<size_t>(num_layers) * 2 * num_kv_heads * head_dim *
           DTypeBytes(dtype == DType::kQ8_0 ? DType::kF16 : dtype, 1);
  }
};

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeParams {
  int head_dim = 0;
  int rotary_dim = 0;  // == head_dim for the Llama family
  float theta = 10000.0f;
  // true: HF half-split ("neox") layout, pairs (i, i + rotary_dim/2).
  // false: interleaved layout of GGUF llama files, pairs (2i, 2i + 1).
  bool is_neox = true;
  RopeScalingType scaling = RopeScalingType::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

// Inverse frequencies (rotary_dim / 2 of them) after scaling; shared by all backends.
std::vector<float> RopeInverseFrequencies(const RopeParams& params);

struct AttentionParams {
  int num_heads = 0;     // query heads on this rank
  int num_kv_heads = 0;  // KV heads on this rank; num_heads % num_kv_heads == 0
  int head_dim = 0;
  float scale = 0.0f;    // usually 1/sqrt(head_dim)
  // 0: full causal attention. Otherwise a query at position p sees keys at positions
  // (p - sliding_window, p] (HF Mistral semantics: q_pos - k_pos < sliding_window).
  int sliding_window = 0;
};

// A tensor-parallel group as a backend sees it. backend/ depends on core only, so model/
// adapts its parallel/ Communicator to this. Calls follow Communicator's contract: every
// rank makes the same calls in the same order; a failure breaks the group.
class CollectiveGroup {
 public:
  virtual ~CollectiveGroup() = default;
  virtual int world_size() const = 0;
  // Where the pointers live. Null: host memory, and a call returns when its result is in
  // the buffer. Otherwise the cudaStream_t (device memory) the calls are enqueued on; a
  // backend runs them only if that is its own device_stream().
  virtual void* device_stream() const = 0;
  // data[i] = sum over ranks of data_r[i], `count` floats, in place.
  virtual absl::Status AllReduceSum(float* data, int64_t count) = 0;
  // recv[r * count + i] = send_r[i]; recv holds world_size() * count floats.
  virtual absl::Status AllGather(const float* send, int64_t count, float* recv) = 0;
  // Device groups: waits (bounded by the group's timeout) until the calls enqueued so far
  // have finished; breaks the group rather than wait forever for a rank that is gone.
  virtual absl::Status Synchronize() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view Name() const = 0;

  // --- memory -------------------------------------------------------------------------
  // Activation buffer owned by the backend until Free() or destruction. Contents undefined.
  virtual absl::StatusOr<TensorView> Allocate(DType dtype, Shape shape) = 0;
  virtual void Free(const TensorView& t) = 0;
  // Makes a host weight usable by ops. Requires: `host` stays valid for the backend's
  // lifetime (the CPU backend uses it in place, e.g. straight from the mmap).
  virtual absl::StatusOr<TensorView> UploadWeight(const TensorView& host) = 0;
  // (Re)creates the paged KV cache. Block contents are undefined until written.
  virtual absl::Status AllocateKvCache(const KvCacheSpec& spec) = 0;
  virtual const KvCacheSpec& kv_cache_spec() const = 0;
  // Copies `src` (any device tensor) to host memory of src.NumBytes() bytes.
  virtual void CopyToHost(const TensorView& src, void* dst) = 0;
  // Copies host bytes into a device tensor of the same size.
  virtual void CopyFromHost(const void* src, TensorView dst) = 0;

  // Copies whole KV blocks (every layer, K and V): copies[i] = {src_block, dst_block}.
  // Copy-on-write of a partial block shared by forked sequences; runs before the step's
  // KV writes. Requires: ids < num_blocks, no dst is also a src.
  virtual void CopyKvBlocks(std::span<const std::pair<int32_t, int32_t>> copies) = 0;

  // --- per step -----------------------------------------------------------------------
  // Validates the plan against the KV cache and builds attention metadata for the step.
  virtual absl::Status PlanStep(const BatchPlan& plan) = 0;
  // Waits for the step's work and returns the first error recorded since the last call.
  virtual absl::Status Finish() = 0;

  // --- ops (use the current plan) -----------------------------------------------------
  // out[t, :] = table[token_ids[t], :] (table in any weight dtype; out F32/activation).
  virtual void Embedding(const TensorView& table, TensorView out) = 0;
  // out = x / rms(x) * weight, per row.
  virtual void RmsNorm(const TensorView& x, const TensorView& weight, float eps,
                       TensorView out) = 0;
  // residual += delta; out = RmsNorm(residual). Fused to save a pass over memory.
  virtual void AddRmsNorm(TensorView residual, const TensorView& delta,
                          const TensorView& weight, float eps, TensorView out) = 0;
  // out[T, N] = x[T, K] * w[N, K]^T (+ bias[N]). w in F32/F16/BF16/Q8_0; bias F32 or null.
  virtual void MatMul(const TensorView& x, const TensorView& w, const TensorView* bias,
                      TensorView out) = 0;
  // Rotates q [T, num_heads*head_dim] and k [T, num_kv_heads*head_dim] in place at the
  // plan's positions.
  virtual void Rope(TensorView q, TensorView k, int num_heads, int num_kv_heads,
                    const RopeParams& params) = 0;
  // Writes this step's k, v rows [T, num_kv_heads*head_dim] into layer `layer` of the cache
  // at the slots given by the plan's block tables and positions.
  virtual void WriteKv(int layer, const TensorView& k, const TensorView& v) = 0;
  // Causal attention of q [T, num_heads*head_dim] over each sequence's cached context
  // (including the tokens just written); out has q's shape.
  virtual void Attention(int layer, const TensorView& q, const AttentionParams& params,
                         TensorView out) = 0;
  // out[t, :] = silu(gate[t, :]) * up[t, :].
  virtual void SiluMul(const TensorView& gate, const TensorView& up, TensorView out) = 0;
  // out[i, :] = x[plan.logits_rows[i], :].
  virtual void GatherLogitsRows(const TensorView& x, TensorView out) = 0;

  // --- collectives (tensor parallelism) ---------------------------------------------
  // The stream (cudaStream_t) this backend queues its ops on, for device collectives
  // (NcclOptions::stream) that must be ordered with them; null when the backend has none
  // (its ops have finished when they return, and it takes host groups only).
  virtual void* device_stream() const { return nullptr; }
  // Sums `t` (an F32 tensor of this backend) over the group's ranks, in place, after the
  // ops issued before and before those issued after. Returns an error known now (the
  // collective's own for a host group; an argument or earlier failure otherwise); a device
  // collective's later failure comes from Finish(), which waits for it through
  // group.Synchronize(). This default stages through host memory (CopyToHost, the group,
  // CopyFromHost), which any backend can do with a host group.
  virtual absl::Status AllReduceSum(CollectiveGroup& group, TensorView t);
  // recv (F32, world_size * n elements) = every rank's `send` (F32, n elements) in rank
  // order, flat: shapes are not looked at, only element counts. Same ordering, errors and
  // default staging as AllReduceSum.
  virtual absl::Status AllGather(CollectiveGroup& group, const TensorView& send,
                                 TensorView recv);
};

}  // namespace tokenmill
