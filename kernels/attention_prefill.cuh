// Paged prefill attention on tensor cores (FlashAttention-2 structure, mma.sync
// m16n8k16). Instantiated in attention_prefill.cu.
//
// Block (query tile, sequence, kv head), 4 warps. The 64 rows of a query tile are
// (token, head-of-group) pairs: row r is token tile_start + r / G, head kv_head * G + r % G.
// Packing the group's heads into the M dimension lets one K/V tile load serve all of them
// (GQA). Each warp owns 16 rows: Q stays in registers as mma A fragments; K/V tiles of 64
// keys are gathered through the block table with cp.async into XOR-swizzled shared
// memory (double-buffered) and read with ldmatrix; S = Q K^T and O += P V run on tensor
// cores with fp32 accumulators; softmax is online in the log2 domain, with P rounded to
// the cache type for the second product (as FlashAttention does).
#pragma once

#include "kernels/attention.h"
#include "kernels/common.cuh"
#include "kernels/mma.cuh"

namespace tokenmill::kernels {

inline constexpr int kPrefillThreads = 128;
inline constexpr int kPrefillRows = 64;  // query rows per block (4 warps x 16)
inline constexpr int kPrefillKeys = 64;  // keys per K/V tile
inline constexpr float kPrefillLog2e = 1.4426950408889634f;

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows, D] tile of 2-byte
// elements. XOR-ing the chunk with row % 8 puts the 8 rows an ldmatrix reads at one
// logical column into 8 different bank groups.
template <int D>
__device__ __forceinline__ int SwizzledOffset(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

template <typename TKV, int D>
__device__ __forceinline__ void PrefillLoadKv(TKV* sk, TKV* sv, const AttentionArgs& a,
                                              const int32_t* table, int kv_head, int key0,
                                              int num_keys) {
  constexpr int kChunksPerRow = D / 8;
  const TKV* kc = static_cast<const TKV*>(a.kv.k_cache);
  const TKV* vc = static_cast<const TKV*>(a.kv.v_cache);
  for (int c = threadIdx.x; c < kPrefillKeys * kChunksPerRow; c += kPrefillThreads) {
    const int row = c / kChunksPerRow, chunk = c % kChunksPerRow;
    const int key = key0 + row;
    const bool valid = key < num_keys;
    int64_t off = 0;
    if (valid) {
      const int64_t slot = static_cast<int64_t>(table[key / a.kv.block_size]) * a.kv.block_size +
                           key % a.kv.block_size;
      off = (slot * a.num_kv_heads + kv_head) * D + chunk * 8;
    }
    const int dst = SwizzledOffset<D>(row, chunk);
    CpAsync16(sk + dst, kc + off, valid);
    CpAsync16(sv + dst, vc + off, valid);
  }
}

// Q rows of the tile -> shared memory in the cache type; dead rows are zeros.
template <typename TQ, typename TKV, int D>
__device__ __forceinline__ void PrefillLoadQ(TKV* sq, const AttentionArgs& a, int64_t q_row0,
                                             int tok0, int q_len, int group, int kv_head) {
  constexpr int kChunksPerRow = D / 8;
  const int rows_used = (kPrefillRows / group) * group;
  const int64_t row_elems = static_cast<int64_t>(a.num_heads) * D;
  for (int c = threadIdx.x; c < kPrefillRows * kChunksPerRow; c += kPrefillThreads) {
    const int r = c / kChunksPerRow, chunk = c % kChunksPerRow;
    const int tok = tok0 + r / group;
    Packed<TKV, 8> val;
    if (r < rows_used && tok < q_len) {
      const TQ* src = static_cast<const TQ*>(a.q) + (q_row0 + tok) * row_elems +
                      static_cast<int64_t>(kv_head * group + r % group) * D + chunk * 8;
      const Packed<TQ, 8> x = *reinterpret_cast<const Packed<TQ, 8>*>(src);
#pragma unroll
      for (int e = 0; e < 8; ++e) val.v[e] = FromFloat<TKV>(ToFloat(x.v[e]));
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) val.v[e] = FromFloat<TKV>(0.0f);
    }
    *reinterpret_cast<Packed<TKV, 8>*>(sq + SwizzledOffset<D>(r, chunk)) = val;
  }
}

template <typename TQ, typename TKV, int D>
__global__ void __launch_bounds__(kPrefillThreads) PagedPrefillKernel(AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  TKV* sq = reinterpret_cast<TKV*>(smem_raw);
  TKV* sk = sq + kPrefillRows * D;          // [2][kPrefillKeys * D]
  TKV* sv = sk + 2 * kPrefillKeys * D;      // [2][kPrefillKeys * D]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sel = blockIdx.y, kv_head = blockIdx.z;
  const int seq = a.batch.seq_ids[sel];
  const int group = a.num_heads / a.num_kv_heads;
  const int tokens_per_tile = kPrefillRows / group;
  const int q_len = a.batch.num_query[seq];
  // Heaviest tiles (last tokens, longest causal span) are scheduled first.
  const int tile = gridDim.x - 1 - blockIdx.x;
  if (q_len <= 0 || tile >= CeilDiv(q_len, tokens_per_tile)) return;
  const int ctx = a.batch.context_len[seq];
  const int tok0 = tile * tokens_per_tile;
  const int pos0 = ctx - q_len;  // position of the chunk's first token
  const int last_tok = min(tok0 + tokens_per_tile, q_len) - 1;
  const int num_keys = pos0 + last_tok + 1;
  const int num_kv_tiles = static_cast<int>(CeilDiv(num_keys, kPrefillKeys));
  const int window = a.sliding_window;
  // With a window, key tiles below the first row's window are never visible.
  const int first_tile = window > 0 ? max(0, pos0 + tok0 - window + 1) / kPrefillKeys : 0;
  const int32_t* table = a.kv.block_tables + static_cast<int64_t>(seq) * a.kv.block_table_stride;

  PrefillLoadQ<TQ, TKV, D>(sq, a, a.batch.query_start[seq], tok0, q_len, group, kv_head);
  PrefillLoadKv<TKV, D>(sk, sv, a, table, kv_head, first_tile * kPrefillKeys, num_keys);
  CpAsyncCommit();
  __syncthreads();  // Q tile written by plain stores

  uint32_t qa[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
    LdMatrixX4(qa[ks], sq + SwizzledOffset<D>(row, ks * 2 + (lane >> 4)));
  }
  // Positions of the two rows this thread holds in C fragments; dead rows see every key
  // of the tile so that their (discarded) softmax stays finite.
  int qpos[2];
  bool row_live[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * 16 + (lane >> 2) + h * 8;
    const int tok = tok0 + r / group;
    row_live[h] = r < tokens_per_tile * group && tok < q_len;
    qpos[h] = row_live[h] ? pos0 + tok : num_keys - 1;
  }
  const float scale_log2 = a.scale * kPrefillLog2e;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float o[D / 8][4] = {};

  for (int j = first_tile; j < num_kv_tiles; ++j) {
    const int buf = (j - first_tile) & 1;
    if (j + 1 < num_kv_tiles) {
      PrefillLoadKv<TKV, D>(sk + (buf ^ 1) * kPrefillKeys * D, sv + (buf ^ 1) * kPrefillKeys * D,
                            a, table, kv_head, (j + 1) * kPrefillKeys, num_keys);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const TKV* kb = sk + buf * kPrefillKeys * D;
    const TKV* vb = sv + buf * kPrefillKeys * D;

    // S = Q K^T: 16 rows x 64 keys per warp, 8 n-tiles of 8 keys.
    float s[8][4] = {};
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        const int krow = np * 16 + (lane & 7) + ((lane >> 4) << 3);
        LdMatrixX4(b, kb + SwizzledOffset<D>(krow, ks * 2 + ((lane >> 3) & 1)));
        Mma16816<TKV>(s[2 * np], qa[ks], b[0], b[1]);
        Mma16816<TKV>(s[2 * np + 1], qa[ks], b[2], b[3]);
      }
    }

    // Scale, causal mask, online softmax. A row's 64 scores live in the 4 threads of its
    // quad, so row reductions are two xor-shuffles.
    const int key0 = j * kPrefillKeys;
    float row_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = key0 + nt * 8 + (lane & 3) * 2 + (i & 1);
        float v = s[nt][i] * scale_log2;
        if (key > qpos[i >> 1] || (window > 0 && key <= qpos[i >> 1] - window)) v = -INFINITY;
        s[nt][i] = v;
        row_max[i >> 1] = fmaxf(row_max[i >> 1], v);
      }
    }
    float alpha[2], m_exp[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_max[h] = fmaxf(row_max[h], __shfl_xor_sync(0xffffffffu, row_max[h], 1));
      row_max[h] = fmaxf(row_max[h], __shfl_xor_sync(0xffffffffu, row_max[h], 2));
      // -inf while every key so far is masked for this row (possible with a window, or
      // for dead rows); 0 then stands in so that exp2 yields 0, never NaN.
      const float m_new = fmaxf(m_run[h], row_max[h]);
      const float m_safe = m_new == -INFINITY ? 0.0f : m_new;
      alpha[h] = exp2f(m_run[h] - m_safe);
      m_run[h] = m_new;
      m_exp[h] = m_safe;
      l_run[h] *= alpha[h];
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float p = exp2f(s[nt][i] - m_exp[i >> 1]);
        s[nt][i] = p;
        l_run[i >> 1] += p;  // this thread's share; the quad is summed at the end
      }
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }

    // O += P V: the C fragments of two adjacent key n-tiles form one A fragment.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const uint32_t pa[4] = {PackFloat2<TKV>(s[2 * kk][0], s[2 * kk][1]),
                              PackFloat2<TKV>(s[2 * kk][2], s[2 * kk][3]),
                              PackFloat2<TKV>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              PackFloat2<TKV>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        const int vrow = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        LdMatrixX4Trans(b, vb + SwizzledOffset<D>(vrow, dp * 2 + (lane >> 4)));
        Mma16816<TKV>(o[2 * dp], pa, b[0], b[1]);
        Mma16816<TKV>(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // iteration j + 1 loads tile j + 2 into this buffer
  }

  // Normalize and store the live rows.
  const int64_t row_elems = static_cast<int64_t>(a.num_heads) * D;
  const int64_t q_row0 = a.batch.query_start[seq];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = l_run[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (!row_live[h]) continue;
    const float inv = 1.0f / l;
    const int r = warp * 16 + (lane >> 2) + h * 8;
    TQ* dst = static_cast<TQ*>(a.out) + (q_row0 + tok0 + r / group) * row_elems +
              static_cast<int64_t>(kv_head * group + r % group) * D;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      const int d = dt * 8 + (lane & 3) * 2;
      Packed<TQ, 2> pair;
      pair.v[0] = FromFloat<TQ>(o[dt][2 * h] * inv);
      pair.v[1] = FromFloat<TQ>(o[dt][2 * h + 1] * inv);
      *reinterpret_cast<Packed<TQ, 2>*>(dst + d) = pair;
    }
  }
}

template <typename TKV, int D>
inline constexpr size_t kPrefillSmemBytes =
    static_cast<size_t>(kPrefillRows + 4 * kPrefillKeys) * D * sizeof(TKV);

}  // namespace tokenmill::kernels
