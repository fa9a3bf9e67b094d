// Generic paged attention: one block per (query token, sequence, head), fp32 arithmetic,
// any cache type, head_dim <= 512 and any head grouping. Slow (each thread reads whole
// K rows) but simple enough to check by reading; it serves the shapes the fast paths do
// not (tiny test models, fp32 caches) and is the device-side reference for them.
// Instantiated in attention_generic.cu.
#pragma once

#include "kernels/attention.h"
#include <type_traits>

#include "kernels/common.cuh"

namespace tokenmill::kernels {

inline constexpr int kGenericThreads = 128;
inline constexpr int kGenericMaxDimsPerThread = 4;  // head_dim <= 512

template <typename TQ, typename TKV>
__global__ void __launch_bounds__(kGenericThreads) PagedAttentionGenericKernel(AttentionArgs a) {
  extern __shared__ int64_t smem[];  // slot[128], then float p[128], then float q[head_dim]
  int64_t* sslot = smem;
  float* sp = reinterpret_cast<float*>(sslot + kGenericThreads);
  float* sq = sp + kGenericThreads;
  __shared__ float red[32];
  const int i = blockIdx.x, sel = blockIdx.y, head = blockIdx.z;
  const int seq = a.batch.seq_ids[sel];
  const int q_len = a.batch.num_query[seq];
  if (i >= q_len) return;
  const int D = a.head_dim, hkv = a.num_kv_heads;
  const int kv_head = head / (a.num_heads / hkv);
  const int ctx = a.batch.context_len[seq];
  const int num_keys = ctx - q_len + i + 1;  // causal: positions [first, own position]
  const int first = a.sliding_window > 0 ? max(0, num_keys - a.sliding_window) : 0;
  const int64_t row = a.batch.query_start[seq] + i;
  const int32_t* table = a.kv.block_tables + static_cast<int64_t>(seq) * a.kv.block_table_stride;
  const TQ* q = static_cast<const TQ*>(a.q) + (row * a.num_heads + head) * D;
  const TKV* kc = static_cast<const TKV*>(a.kv.k_cache);
  const TKV* vc = static_cast<const TKV*>(a.kv.v_cache);
  const float q_scale = a.scale * 1.4426950408889634f;
  for (int d = threadIdx.x; d < D; d += kGenericThreads) sq[d] = ToFloat(q[d]) * q_scale;
  __syncthreads();

  float m = -INFINITY, l = 0.0f;
  float acc[kGenericMaxDimsPerThread] = {};
  for (int k0 = first; k0 < num_keys; k0 += kGenericThreads) {
    const int key = k0 + static_cast<int>(threadIdx.x);
    float score = -INFINITY;
    if (key < num_keys) {
      const int64_t slot = static_cast<int64_t>(table[key / a.kv.block_size]) * a.kv.block_size +
                           key % a.kv.block_size;
      sslot[threadIdx.x] = slot;
      const TKV* kr = kc + (slot * hkv + kv_head) * D;
      score = 0.0f;
      for (int d = 0; d < D; ++d) score += sq[d] * ToFloat(kr[d]);
    }
    const float m_new = fmaxf(m, BlockMax(score, red));  // finite: key k0 is visible
    const float p = key < num_keys ? exp2f(score - m_new) : 0.0f;
    sp[threadIdx.x] = p;
    const float alpha = exp2f(m - m_new);
    l = l * alpha + BlockSum(p, red);  // its barriers also publish sp and sslot
    m = m_new;
    const int count = min(kGenericThreads, num_keys - k0);
#pragma unroll
    for (int u = 0; u < kGenericMaxDimsPerThread; ++u) {
      const int d = threadIdx.x + u * kGenericThreads;
      if (d >= D) break;
      float sum = acc[u] * alpha;
      for (int t = 0; t < count; ++t) sum += sp[t] * ToFloat(vc[(sslot[t] * hkv + kv_head) * D + d]);
      acc[u] = sum;
    }
    __syncthreads();  // sp and sslot are rewritten by the next chunk
  }
  TQ* out = static_cast<TQ*>(a.out) + (row * a.num_heads + head) * D;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int u = 0; u < kGenericMaxDimsPerThread; ++u) {
    const int d = threadIdx.x + u * kGenericThreads;
    if (d < D) out[d] = FromFloat<TQ>(acc[u] * inv);
  }
}

}  // namespace tokenmill::kernels
