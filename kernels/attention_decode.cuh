// Split-K paged decode attention ("flash decoding"). Instantiated in attention_decode.cu.
//
// Block (split, sequence, kv head), 128 threads. The block walks its split of the
// context in tiles of 64 tokens: K and V tiles are gathered through the block table into
// shared memory with cp.async (double-buffered, so tile i+1 loads while tile i computes),
// then every query head of the KV group scores the same K tile and accumulates the same
// V tile: one K/V load from memory serves the whole group. Softmax is online in the
// log2 domain (q is pre-scaled by scale * log2(e)). With several splits, each writes an
// unnormalized partial (m, l, o) and DecodeCombineKernel merges them.
#pragma once

#include "kernels/attention.h"
#include "kernels/common.cuh"

namespace tokenmill::kernels {

inline constexpr int kDecodeThreads = 128;
inline constexpr int kDecodeTile = 64;
inline constexpr int kDecodeMaxGroup = 8;
inline constexpr float kLog2e = 1.4426950408889634f;

template <typename TKV, int D>
struct DecodeSmem {
  // Rows padded by 16 bytes: the score loop reads one row per lane, and the padding
  // spreads 8 consecutive rows over all 32 banks.
  static constexpr int kRowElems = D + 16 / static_cast<int>(sizeof(TKV));
  TKV k[2][kDecodeTile][kRowElems];
  TKV v[2][kDecodeTile][kRowElems];
  float q[kDecodeMaxGroup][D];
  float p[kDecodeMaxGroup][kDecodeTile];
  float alpha[kDecodeMaxGroup];
  float m[kDecodeMaxGroup];
  float l[kDecodeMaxGroup];
};

// Gathers tokens [t0, t0 + 64) ∩ [.., end) of one KV head into shared memory; rows past
// `end` are zero-filled so that p * v stays 0 for them.
template <typename TKV, int D>
__device__ __forceinline__ void DecodeLoadTile(DecodeSmem<TKV, D>& s, int buf,
                                               const AttentionArgs& a, const int32_t* table,
                                               int kv_head, int t0, int end) {
  constexpr int kElems = 16 / sizeof(TKV);
  constexpr int kChunksPerRow = D / kElems;
  const TKV* kc = static_cast<const TKV*>(a.kv.k_cache);
  const TKV* vc = static_cast<const TKV*>(a.kv.v_cache);
  for (int c = threadIdx.x; c < kDecodeTile * kChunksPerRow; c += kDecodeThreads) {
    const int row = c / kChunksPerRow, col = c % kChunksPerRow;
    const int tok = t0 + row;
    const bool valid = tok < end;
    int64_t off = 0;
    if (valid) {
      const int64_t slot = static_cast<int64_t>(table[tok / a.kv.block_size]) * a.kv.block_size +
                           tok % a.kv.block_size;
      off = (slot * a.num_kv_heads + kv_head) * D + col * kElems;
    }
    CpAsync16(&s.k[buf][row][col * kElems], kc + off, valid);
    CpAsync16(&s.v[buf][row][col * kElems], vc + off, valid);
  }
}

// Scores of every (head of the group, token of the tile) pair, in the log2 domain.
template <typename TKV, int D>
__device__ __forceinline__ void DecodeScores(DecodeSmem<TKV, D>& s, int buf, int group,
                                             int valid_tokens) {
  constexpr int kElems = 16 / sizeof(TKV);
  for (int pair = threadIdx.x; pair < group * kDecodeTile; pair += kDecodeThreads) {
    const int g = pair / kDecodeTile, t = pair % kDecodeTile;
    float score = -INFINITY;
    if (t < valid_tokens) {
      const auto* kr = reinterpret_cast<const Packed<TKV, kElems>*>(&s.k[buf][t][0]);
      const float* qr = s.q[g];
      score = 0.0f;
#pragma unroll
      for (int c = 0; c < D / kElems; ++c) {
        const Packed<TKV, kElems> kv = kr[c];
#pragma unroll
        for (int e = 0; e < kElems; ++e) score += qr[c * kElems + e] * ToFloat(kv.v[e]);
      }
    }
    s.p[g][t] = score;
  }
}

// Turns the tile's scores into probabilities against the running max; one warp per head.
template <typename TKV, int D>
__device__ __forceinline__ void DecodeSoftmax(DecodeSmem<TKV, D>& s, int group) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int g = warp; g < group; g += kDecodeThreads / 32) {
    const float s0 = s.p[g][lane], s1 = s.p[g][lane + 32];
    const float m_old = s.m[g];
    // Finite: every tile holds at least one valid token.
    const float m_new = fmaxf(m_old, WarpMax(fmaxf(s0, s1)));
    const float p0 = exp2f(s0 - m_new), p1 = exp2f(s1 - m_new);
    s.p[g][lane] = p0;
    s.p[g][lane + 32] = p1;
    const float sum = WarpSum(p0 + p1);
    if (lane == 0) {
      const float alpha = exp2f(m_old - m_new);  // 0 on the first tile (m_old = -inf)
      s.alpha[g] = alpha;
      s.m[g] = m_new;
      s.l[g] = s.l[g] * alpha + sum;
    }
  }
}

template <typename TQ, typename TKV, int D>
__global__ void __launch_bounds__(kDecodeThreads)
    PagedDecodeKernel(AttentionArgs a, int num_splits, float* ws_o, float2* ws_ml) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  auto& s = *reinterpret_cast<DecodeSmem<TKV, D>*>(smem_raw);
  const int split = blockIdx.x, sel = blockIdx.y, kv_head = blockIdx.z;
  const int seq = a.batch.seq_ids[sel];
  const int ctx = a.batch.context_len[seq];
  const int group = a.num_heads / a.num_kv_heads;
  const int64_t qrow = a.batch.query_start[seq] + a.batch.num_query[seq] - 1;
  const int64_t row_elems = static_cast<int64_t>(a.num_heads) * D;
  const int first = a.sliding_window > 0 ? max(0, ctx - a.sliding_window) : 0;
  const int per_split =
      static_cast<int>(CeilDiv(CeilDiv(ctx - first, num_splits), kDecodeTile) * kDecodeTile);
  const int begin = first + split * per_split;
  const int end = min(ctx, begin + per_split);
  const int32_t* table = a.kv.block_tables + static_cast<int64_t>(seq) * a.kv.block_table_stride;

  const TQ* q = static_cast<const TQ*>(a.q) + qrow * row_elems + kv_head * group * D;
  const float q_scale = a.scale * kLog2e;
  for (int i = threadIdx.x; i < group * D; i += kDecodeThreads) {
    s.q[i / D][i % D] = ToFloat(q[i]) * q_scale;
  }
  if (threadIdx.x < kDecodeMaxGroup) {
    s.m[threadIdx.x] = -INFINITY;
    s.l[threadIdx.x] = 0.0f;
  }
  // Output layout of this thread: dims (2*dp, 2*dp+1) of heads hs, hs + kHeadStride, ...
  constexpr int kPairs = D / 2;
  constexpr int kHeadStride = kDecodeThreads / kPairs;
  constexpr int kSlots = kDecodeMaxGroup / kHeadStride;
  const int dp = threadIdx.x % kPairs, hs = threadIdx.x / kPairs;
  float acc[kSlots][2] = {};
  __syncthreads();

  const int num_tiles = begin < end ? static_cast<int>(CeilDiv(end - begin, kDecodeTile)) : 0;
  if (num_tiles > 0) DecodeLoadTile(s, 0, a, table, kv_head, begin, end);
  CpAsyncCommit();
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int buf = tile & 1, t0 = begin + tile * kDecodeTile;
    if (tile + 1 < num_tiles) {
      DecodeLoadTile(s, buf ^ 1, a, table, kv_head, t0 + kDecodeTile, end);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    DecodeScores(s, buf, group, min(kDecodeTile, end - t0));
    __syncthreads();
    DecodeSoftmax(s, group);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int g = hs + j * kHeadStride;
      if (g < group) {
        acc[j][0] *= s.alpha[g];
        acc[j][1] *= s.alpha[g];
      }
    }
#pragma unroll 4
    for (int t = 0; t < kDecodeTile; ++t) {
      const Packed<TKV, 2> vv = *reinterpret_cast<const Packed<TKV, 2>*>(&s.v[buf][t][2 * dp]);
      const float v0 = ToFloat(vv.v[0]), v1 = ToFloat(vv.v[1]);
#pragma unroll
      for (int j = 0; j < kSlots; ++j) {
        const int g = hs + j * kHeadStride;
        if (g < group) {
          const float p = s.p[g][t];
          acc[j][0] += p * v0;
          acc[j][1] += p * v1;
        }
      }
    }
    __syncthreads();  // the next iteration overwrites this buffer and s.p
  }

#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    const int g = hs + j * kHeadStride;
    if (g >= group) continue;
    const int head = kv_head * group + g;
    if (num_splits == 1) {
      const float l = s.l[g];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      TQ* o = static_cast<TQ*>(a.out) + qrow * row_elems + static_cast<int64_t>(head) * D;
      o[2 * dp] = FromFloat<TQ>(acc[j][0] * inv);
      o[2 * dp + 1] = FromFloat<TQ>(acc[j][1] * inv);
    } else {
      const int64_t idx = (static_cast<int64_t>(sel) * a.num_heads + head) * num_splits + split;
      reinterpret_cast<float2*>(ws_o + idx * D)[dp] = make_float2(acc[j][0], acc[j][1]);
      if (dp == 0) ws_ml[idx] = make_float2(s.m[g], s.l[g]);
    }
  }
}

// Merges the splits of one (sequence, head): o = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s.
template <typename TQ>
__global__ void DecodeCombineKernel(AttentionArgs a, int num_splits, const float* ws_o,
                                    const float2* ws_ml) {
  const int sel = blockIdx.x, head = blockIdx.y, D = a.head_dim;
  const int seq = a.batch.seq_ids[sel];
  const int64_t qrow = a.batch.query_start[seq] + a.batch.num_query[seq] - 1;
  const int64_t base = (static_cast<int64_t>(sel) * a.num_heads + head) * num_splits;
  float m_max = -INFINITY;
  for (int s = 0; s < num_splits; ++s) m_max = fmaxf(m_max, ws_ml[base + s].x);
  TQ* o = static_cast<TQ*>(a.out) + (qrow * a.num_heads + head) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    if (m_max != -INFINITY) {
      for (int s = 0; s < num_splits; ++s) {
        const float2 ml = ws_ml[base + s];
        const float w = exp2f(ml.x - m_max);  // 0 for empty splits (m = -inf)
        num += w * ws_o[(base + s) * D + d];
        den += w * ml.y;
      }
    }
    o[d] = FromFloat<TQ>(den > 0.0f ? num / den : 0.0f);
  }
}

}  // namespace tokenmill::kernels
