// Decode attention (one query row per sequence), split-K over the context. A task owns a
// range of keys for every head of its sequence, so it streams whole blocks (all heads of
// a token are adjacent in the cache) front to back instead of one head's short rows a
// token stride apart; splits are fixed by position, and their partial softmax states are
// merged in split order, so the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/attention_internal.h"

namespace tokenmill::cpu {
namespace {

constexpr int64_t kSplitKeys = 256;
// Bytes of gathered K (and as much V) per chunk: both together stay inside a 1 MiB L2.
constexpr int64_t kChunkBytes = 256 << 10;
// How far ahead the gather prefetches, in bytes of cache rows.
constexpr int64_t kPrefetchBytes = 8 << 10;

// Copies keys [c0, c1) of every head into out[kv_head][i][head_dim] (f32), reading the
// cache in address order with software prefetch across block boundaries.
void GatherAllHeads(const KernelTable& kt, const BatchSequence& seq, const KvCacheSpec& spec,
                    const AttentionGeometry& g, const uint8_t* cache, int64_t c0, int64_t c1,
                    int lds, float* out) {
  const int64_t token_bytes = g.kv_token_stride * static_cast<int64_t>(g.kv_bytes);
  const int64_t row_bytes = g.head_dim * static_cast<int64_t>(g.kv_bytes);
  const int64_t ahead = std::max<int64_t>(1, kPrefetchBytes / token_bytes);
  KvCursor cur(seq, spec.block_size, g, cache, c0);
  KvCursor next(seq, spec.block_size, g, cache, c0);
  for (int64_t pos = c0; pos < std::min(c1, c0 + ahead); ++pos) next.Next();
  for (int64_t pos = c0; pos < c1; ++pos, cur.Next()) {
    if (pos + ahead < c1) {
      for (int64_t b = 0; b < token_bytes; b += 64) __builtin_prefetch(next.get() + b, 0, 3);
      next.Next();
    }
    for (int h = 0; h < spec.num_kv_heads; ++h) {
      kt.convert_row(spec.dtype, cur.get() + h * row_bytes, 0, g.head_dim,
                     out + (static_cast<int64_t>(h) * lds + (pos - c0)) * g.head_dim);
    }
  }
}

}  // namespace

int64_t DecodeSplitKeys(const KvCacheSpec& spec) {
  return std::max<int64_t>(1, kSplitKeys / spec.block_size) * spec.block_size;
}

void RunDecodeSplit(CpuContext& ctx, int thread, const DecodeSplit& split, const BatchPlan& plan,
                    const KvCacheSpec& spec, KvLayerView layer, const float* q, float scale,
                    const AttentionGeometry& g, float* out, float* partials) {
  const KernelTable& kt = *ctx.kernels;
  const BatchSequence& seq = plan.sequences[split.seq];
  const int rows = g.num_heads, hd = g.head_dim, kv_heads = g.num_heads / g.group;
  const int64_t token_floats = g.kv_token_stride;
  const int lds = static_cast<int>(
      std::clamp<int64_t>(kChunkBytes / (token_floats * 4) / spec.block_size * spec.block_size,
                          spec.block_size, kChunkKeys));
  float* base = ctx.Scratch(thread, static_cast<size_t>(rows) * (2 * hd + 2 * lds + 4) +
                                        2 * static_cast<size_t>(lds) * token_floats);
  TileState st;
  st.q = base;
  st.o = st.q + rows * hd;
  st.s = st.o + rows * hd;
  st.p = st.s + rows * lds;
  st.m = st.p + rows * lds;
  st.l = st.m + rows;
  st.lo = reinterpret_cast<int32_t*>(st.l + rows);
  st.hi = st.lo + rows;
  float* keys = reinterpret_cast<float*>(st.hi + rows);  // [kv_heads, lds, hd]
  float* values = keys + static_cast<int64_t>(lds) * token_floats;

  // Row r is query head r; its KV head is r / group, as in HF's repeat_kv.
  const float* qrow = q + seq.query_start * g.q_row_stride;
  for (int64_t i = 0; i < static_cast<int64_t>(rows) * hd; ++i) st.q[i] = qrow[i] * scale;
  std::fill(st.o, st.o + static_cast<int64_t>(rows) * hd, 0.0f);
  for (int r = 0; r < rows; ++r) {
    st.m[r] = -std::numeric_limits<float>::infinity();
    st.l[r] = 0.0f;
    st.lo[r] = static_cast<int32_t>(split.key_begin);
    st.hi[r] = static_cast<int32_t>(split.key_end);
  }
  const uint8_t* k_cache = static_cast<const uint8_t*>(layer.k);
  const uint8_t* v_cache = static_cast<const uint8_t*>(layer.v);
  const int64_t head_floats = static_cast<int64_t>(lds) * hd;
  for (int64_t c0 = split.key_begin; c0 < split.key_end;) {
    const int64_t c1 = std::min(split.key_end, (c0 / lds + 1) * lds);
    const int width = static_cast<int>(c1 - c0);
    GatherAllHeads(kt, seq, spec, g, k_cache, c0, c1, lds, keys);
    for (int h = 0; h < kv_heads; ++h) {
      kt.attn_scores(st.q + h * g.group * hd, hd, g.group, keys + h * head_floats, hd, width, hd,
                     DType::kF32, st.s + h * g.group * lds, lds);
    }
    SoftmaxChunk(kt, st, rows, c0, width, lds, hd);
    GatherAllHeads(kt, seq, spec, g, v_cache, c0, c1, lds, values);
    for (int h = 0; h < kv_heads; ++h) {
      kt.attn_values(st.p + h * g.group * lds, lds, g.group, values + h * head_floats, hd, width,
                     hd, DType::kF32, st.o + h * g.group * hd, hd);
    }
    c0 = c1;
  }

  if (split.partial < 0) {
    float* orow = out + seq.query_start * g.q_row_stride;
    for (int r = 0; r < rows; ++r) {
      const float inv = 1.0f / st.l[r];
      for (int d = 0; d < hd; ++d) orow[r * hd + d] = st.o[r * hd + d] * inv;
    }
    return;
  }
  float* dst = partials + split.partial * DecodePartialFloats(g);
  std::copy(st.o, st.o + static_cast<int64_t>(rows) * hd, dst);
  std::copy(st.m, st.m + rows, dst + static_cast<int64_t>(rows) * hd);
  std::copy(st.l, st.l + rows, dst + static_cast<int64_t>(rows) * hd + rows);
}

void MergeDecodeSplits(const AttentionGeometry& g, const float* partials, int num_splits,
                       float* out_row) {
  const int rows = g.num_heads, hd = g.head_dim;
  const int64_t stride = DecodePartialFloats(g);
  for (int r = 0; r < rows; ++r) {
    float m = -std::numeric_limits<float>::infinity();
    for (int s = 0; s < num_splits; ++s) m = std::max(m, partials[s * stride + rows * hd + r]);
    float l = 0.0f;
    float* o = out_row + r * hd;
    std::fill(o, o + hd, 0.0f);
    for (int s = 0; s < num_splits; ++s) {
      const float* part = partials + s * stride;
      const float w = std::exp(part[rows * hd + r] - m);
      l += part[rows * hd + rows + r] * w;
      for (int d = 0; d < hd; ++d) o[d] += part[r * hd + d] * w;
    }
    const float inv = 1.0f / l;
    for (int d = 0; d < hd; ++d) o[d] *= inv;
  }
}

}  // namespace tokenmill::cpu
