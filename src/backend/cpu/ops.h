// Drivers of the CPU backend's ops: blocking, threading and the loops around the kernels of
// kernels.h. Arguments are raw host pointers already validated by CpuBackend (shapes,
// dtypes, plan); these functions do no checking beyond TM_DCHECK.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/backend/step_metadata.h"

namespace tokenmill::cpu {

// 64-byte aligned float storage that only grows.
class ScratchBuffer {
 public:
  float* Get(size_t num_floats);

 private:
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], FreeDeleter> data_;
  size_t capacity_ = 0;
};

// What every driver needs. Scratch(thread, n) may be called from a pool task with that
// task's `thread` index; the buffer stays valid until the same thread asks again.
// shared_scratch belongs to the op driver (the calling thread) and may be handed to tasks.
struct CpuContext {
  const KernelTable* kernels = nullptr;
  ThreadPool* pool = nullptr;
  std::vector<ScratchBuffer> scratch;  // one per pool thread
  ScratchBuffer shared_scratch;

  float* Scratch(int thread, size_t num_floats) { return scratch[thread].Get(num_floats); }
};

// out[T, N] = x[T, K] * w[N, K]^T (+ bias). Requires: out does not overlap x;
// for Q8_0, K % 32 == 0.
struct MatMulArgs {
  const float* x;
  int64_t num_rows;  // T
  int64_t k;
  DType w_dtype;
  const void* w;
  int64_t n;
  const float* bias;  // [N] or null
  float* out;
};
void MatMul(CpuContext& ctx, const MatMulArgs& args);

// One layer of the paged KV cache: K and V each [num_blocks, block_size, kv_heads, hd].
struct KvLayerView {
  void* k;
  void* v;
};

// Writes rows k, v [T, kv_heads * head_dim] to their slots.
void WriteKv(CpuContext& ctx, const KvCacheSpec& spec, const StepMetadata& meta, const float* k,
             const float* v, KvLayerView layer);

// Causal paged attention of q [T, num_heads * head_dim] into out (same shape).
void PagedAttention(CpuContext& ctx, const BatchPlan& plan, const KvCacheSpec& spec,
                    KvLayerView layer, const float* q, const AttentionParams& params, float* out);

// --- row-wise ops (elementwise.cc) ------------------------------------------------------

// out[t, :] = table row ids[t] converted to f32.
void EmbeddingRows(CpuContext& ctx, DType table_dtype, const void* table, int64_t dim,
                   const int32_t* ids, int64_t num_rows, float* out);
// out = x * rsqrt(mean(x^2) + eps) * weight; when residual_delta is set, x += delta first
// (x is then updated in place). out may alias x.
void RmsNormRows(CpuContext& ctx, float* x, const float* residual_delta, DType weight_dtype,
                 const void* weight, float eps, int64_t num_rows, int64_t dim, float* out);
// Rotates `num_heads` heads of each row in place. cos_sin holds, per row, rotary_dim/2
// cosines followed by rotary_dim/2 sines.
void RopeRows(CpuContext& ctx, float* x, int64_t num_rows, int num_heads, int head_dim,
              int rotary_dim, bool is_neox, const float* cos_sin);
// cos_sin table for RopeRows at the given positions.
void RopeTable(const std::vector<float>& inv_freq, const int32_t* positions, int64_t num_rows,
               std::vector<float>* cos_sin);
void SiluMulRows(CpuContext& ctx, const float* gate, const float* up, int64_t num_elements,
                 float* out);

}  // namespace tokenmill::cpu
