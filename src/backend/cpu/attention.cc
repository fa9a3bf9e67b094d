// Paged attention and the KV-cache write.
//
// A task is (sequence, KV head, tile of the sequence's query rows). Its query heads that
// share the KV head are stacked into one tile of rows (row = query_token * group + head),
// so every K and V row read from the cache serves the whole group (GQA). Keys are visited
// through the block table in position order, a chunk of whole blocks at a time (gathered
// into dense f32 rows), with an online softmax in fp32; the causal and sliding-window
// masks reduce to a contiguous range of keys per row.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/attention_internal.h"

namespace tokenmill::cpu {
namespace {

// Rows of one task's tile (query tokens x heads of the group).
constexpr int kMaxTileRows = 64;
// Tiles of at least this many rows use the GEMM micro-kernel; decode tiles (a few rows)
// use the dot-product kernels, which need no packing.
constexpr int kMinGemmRows = 16;

struct AttentionTask {
  int32_t seq;
  int32_t kv_head;
  int32_t q_begin;  // query rows [q_begin, q_end) of the sequence
  int32_t q_end;
  int64_t cost;  // keys x rows, for scheduling long tasks first
};

}  // namespace

void SoftmaxChunk(const KernelTable& kt, const TileState& st, int rows, int64_t chunk_start,
                  int width, int lds, int head_dim) {
  for (int r = 0; r < rows; ++r) {
    float* s = st.s + static_cast<int64_t>(r) * lds;
    float* p = st.p + static_cast<int64_t>(r) * lds;
    const int a = static_cast<int>(std::clamp<int64_t>(st.lo[r] - chunk_start, 0, width));
    const int b = static_cast<int>(std::clamp<int64_t>(st.hi[r] - chunk_start, 0, width));
    std::fill(p, p + a, 0.0f);
    std::fill(p + std::max(a, b), p + width, 0.0f);
    if (a >= b) continue;  // nothing visible to this row in this chunk
    const float chunk_max = *std::max_element(s + a, s + b);
    const float m_new = std::max(st.m[r], chunk_max);
    const float alpha = std::exp(st.m[r] - m_new);  // 0 on the first visible chunk
    st.l[r] = st.l[r] * alpha + kt.exp_shifted(s + a, m_new, b - a, p + a);
    st.m[r] = m_new;
    if (alpha != 1.0f) {
      float* o = st.o + static_cast<int64_t>(r) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] *= alpha;
    }
  }
}

namespace {

// Loads q (pre-scaled) and the visible key range of every row of the tile.
void InitTile(const AttentionTask& task, const BatchSequence& seq, const float* q, float scale,
              int sliding_window, const AttentionGeometry& g, const TileState& st) {
  const int hd = g.head_dim;
  const int32_t first_pos = seq.context_len - seq.num_query_tokens;
  for (int32_t j = task.q_begin; j < task.q_end; ++j) {
    const float* qrow = q + (seq.query_start + j) * g.q_row_stride;
    const int32_t pos = first_pos + j;
    for (int h = 0; h < g.group; ++h) {
      const int r = (j - task.q_begin) * g.group + h;
      const float* src = qrow + (static_cast<int64_t>(task.kv_head) * g.group + h) * hd;
      for (int d = 0; d < hd; ++d) st.q[r * hd + d] = src[d] * scale;
      st.m[r] = -std::numeric_limits<float>::infinity();
      st.l[r] = 0.0f;
      st.lo[r] = sliding_window > 0 ? std::max(0, pos - sliding_window + 1) : 0;
      st.hi[r] = pos + 1;
    }
  }
  const int rows = (task.q_end - task.q_begin) * g.group;
  std::fill(st.o, st.o + static_cast<int64_t>(rows) * hd, 0.0f);
}

// Copies the K or V rows of keys [c0, c1) of one head into contiguous f32 rows. In the
// cache a head's rows are short runs a whole token stride apart (a page apart for wide
// models), which hardware prefetchers do not follow and which alias in the L1/L2 sets;
// gathering them with software prefetch streams the cache once and lets the kernels work
// on dense, conflict-free rows.
//
// strip == 0: out is [c1 - c0, head_dim]. strip > 0: out holds head_dim / strip panels of
// [lds, strip] floats (the GEMM micro-kernel's packed layout), panel i = dims [i*strip, ...).
void GatherRows(const KernelTable& kt, const BatchSequence& seq, const KvCacheSpec& spec,
                const AttentionGeometry& g, const uint8_t* cache, int64_t head_offset, int64_t c0,
                int64_t c1, int strip, int lds, float* out) {
  constexpr int64_t kPrefetchAhead = 16;  // rows: ~DRAM latency at one row per few ns
  const int64_t row_bytes = g.head_dim * static_cast<int64_t>(g.kv_bytes);
  const int64_t head_bytes = head_offset * static_cast<int64_t>(g.kv_bytes);
  KvCursor cur(seq, spec.block_size, g, cache, c0);
  KvCursor next(seq, spec.block_size, g, cache, c0);
  for (int64_t pos = c0; pos < std::min(c1, c0 + kPrefetchAhead); ++pos, next.Next()) {
    for (int64_t b = 0; b < row_bytes; b += 64)
      __builtin_prefetch(next.get() + head_bytes + b, 0, 3);
  }
  for (int64_t pos = c0; pos < c1; ++pos, cur.Next()) {
    if (pos + kPrefetchAhead < c1) {
      for (int64_t b = 0; b < row_bytes; b += 64)
        __builtin_prefetch(next.get() + head_bytes + b, 0, 3);
      next.Next();
    }
    const uint8_t* row = cur.get() + head_bytes;
    if (strip == 0) {
      kt.convert_row(spec.dtype, row, 0, g.head_dim, out + (pos - c0) * g.head_dim);
      continue;
    }
    for (int d = 0; d < g.head_dim; d += strip) {
      kt.convert_row(spec.dtype, row, d, strip,
                     out + static_cast<int64_t>(d) * lds + (pos - c0) * strip);
    }
  }
}

// Tiles with many rows (prefill) run S = Q K^T and O += P V on the GEMM micro-kernel.
// `keys` is [width, hd]; `values` is in gemm_nr-wide panels (GatherRows with strip).
void ScoresGemm(const KernelTable& kt, const TileState& st, int rows, int hd, const float* keys,
                int width, int lds, float* packed) {
  const int nr = kt.gemm_nr, mr = kt.gemm_mr;
  for (int j = 0; j < width; j += nr) {
    kt.pack_panel(DType::kF32, keys, hd, j, std::min(nr, width - j), 0, hd,
                  packed + static_cast<int64_t>(j) * hd);
  }
  for (int r = 0; r < rows; r += mr) {
    for (int j = 0; j < width; j += nr) {
      kt.gemm_micro(std::min(mr, rows - r), std::min(nr, width - j), hd, st.q + r * hd, hd,
                    packed + static_cast<int64_t>(j) * hd, st.s + r * lds + j, lds, false);
    }
  }
}

void ValuesGemm(const KernelTable& kt, const TileState& st, int rows, int hd, const float* values,
                int width, int lds) {
  const int nr = kt.gemm_nr, mr = kt.gemm_mr;
  for (int r = 0; r < rows; r += mr) {
    for (int d = 0; d < hd; d += nr) {
      kt.gemm_micro(std::min(mr, rows - r), nr, width, st.p + r * lds, lds,
                    values + static_cast<int64_t>(d) * lds, st.o + r * hd + d, hd, true);
    }
  }
}

void RunTask(CpuContext& ctx, int thread, const AttentionTask& task, const BatchPlan& plan,
             const KvCacheSpec& spec, KvLayerView layer, const float* q,
             const AttentionParams& params, const AttentionGeometry& g, float* out) {
  const KernelTable& kt = *ctx.kernels;
  const BatchSequence& seq = plan.sequences[task.seq];
  const int bs = spec.block_size;
  const int hd = g.head_dim;
  const int rows = (task.q_end - task.q_begin) * g.group;
  const int lds = std::max(bs, kChunkKeys / bs * bs);  // keys per chunk: whole blocks
  const bool use_gemm = rows >= kMinGemmRows && hd % kt.gemm_nr == 0;
  const int64_t panel_floats =  // packed K^T: whole gemm_nr-wide panels of keys
      static_cast<int64_t>((lds + kt.gemm_nr - 1) / kt.gemm_nr) * kt.gemm_nr * hd;
  float* base = ctx.Scratch(thread, static_cast<size_t>(rows) * (2 * hd + 2 * lds + 4) +
                                        2 * static_cast<size_t>(lds) * hd + panel_floats);
  TileState st;
  st.q = base;
  st.o = st.q + rows * hd;
  st.s = st.o + rows * hd;
  st.p = st.s + rows * lds;
  st.m = st.p + rows * lds;
  st.l = st.m + rows;
  st.lo = reinterpret_cast<int32_t*>(st.l + rows);
  st.hi = st.lo + rows;
  float* keys = reinterpret_cast<float*>(st.hi + rows);   // [lds, hd]
  float* values = keys + static_cast<int64_t>(lds) * hd;  // [lds, hd] or panels
  float* packed_keys = values + static_cast<int64_t>(lds) * hd;
  InitTile(task, seq, q, params.scale, params.sliding_window, g, st);

  // Rows are in position order, so row 0 sees the first key and the last row the last.
  const int64_t key_begin = st.lo[0];
  const int64_t key_end = st.hi[rows - 1];
  const int64_t head_offset = static_cast<int64_t>(task.kv_head) * hd;
  const uint8_t* k_cache = static_cast<const uint8_t*>(layer.k);
  const uint8_t* v_cache = static_cast<const uint8_t*>(layer.v);
  for (int64_t chunk = key_begin / bs * bs; chunk < key_end; chunk += lds) {
    const int64_t c0 = std::max(chunk, key_begin);
    const int64_t c1 = std::min(chunk + lds, key_end);
    const int width = static_cast<int>(c1 - c0);
    GatherRows(kt, seq, spec, g, k_cache, head_offset, c0, c1, 0, lds, keys);
    if (use_gemm) {
      ScoresGemm(kt, st, rows, hd, keys, width, lds, packed_keys);
    } else {
      kt.attn_scores(st.q, hd, rows, keys, hd, width, hd, DType::kF32, st.s, lds);
    }
    SoftmaxChunk(kt, st, rows, c0, width, lds, hd);
    GatherRows(kt, seq, spec, g, v_cache, head_offset, c0, c1, use_gemm ? kt.gemm_nr : 0, lds,
               values);
    if (use_gemm) {
      ValuesGemm(kt, st, rows, hd, values, width, lds);
    } else {
      kt.attn_values(st.p, lds, rows, values, hd, width, hd, DType::kF32, st.o, hd);
    }
  }

  for (int32_t j = task.q_begin; j < task.q_end; ++j) {
    float* orow = out + (seq.query_start + j) * g.q_row_stride;
    for (int h = 0; h < g.group; ++h) {
      const int r = (j - task.q_begin) * g.group + h;
      float* dst = orow + (static_cast<int64_t>(task.kv_head) * g.group + h) * hd;
      const float inv = 1.0f / st.l[r];
      for (int d = 0; d < hd; ++d) dst[d] = st.o[r * hd + d] * inv;
    }
  }
}

// Prefill tiles: (sequence with several query rows, KV head, query tile).
std::vector<AttentionTask> MakeTileTasks(const BatchPlan& plan, int num_kv_heads, int group) {
  const int tile_tokens = std::max(1, kMaxTileRows / group);
  std::vector<AttentionTask> tasks;
  for (int32_t i = 0; i < static_cast<int32_t>(plan.sequences.size()); ++i) {
    const BatchSequence& seq = plan.sequences[i];
    if (seq.num_query_tokens == 1) continue;  // a decode split
    for (int32_t q0 = 0; q0 < seq.num_query_tokens; q0 += tile_tokens) {
      const int32_t q1 = std::min(seq.num_query_tokens, q0 + tile_tokens);
      const int64_t keys = seq.context_len - seq.num_query_tokens + q1;
      for (int32_t h = 0; h < num_kv_heads; ++h) {
        tasks.push_back({i, h, q0, q1, keys * (q1 - q0)});
      }
    }
  }
  return tasks;
}

// Decode sequences: their visible keys cut at multiples of DecodeSplitKeys. Sequences
// with several splits get consecutive partial states, listed in `merges`.
struct DecodeMerge {
  int32_t seq;
  int64_t first_partial;
  int num_splits;
};
std::vector<DecodeSplit> MakeDecodeSplits(const BatchPlan& plan, const KvCacheSpec& spec,
                                          int sliding_window, std::vector<DecodeMerge>* merges,
                                          int64_t* num_partials) {
  const int64_t split_keys = DecodeSplitKeys(spec);
  std::vector<DecodeSplit> splits;
  *num_partials = 0;
  for (int32_t i = 0; i < static_cast<int32_t>(plan.sequences.size()); ++i) {
    const BatchSequence& seq = plan.sequences[i];
    if (seq.num_query_tokens != 1) continue;
    const int64_t end = seq.context_len;
    const int64_t begin = sliding_window > 0 ? std::max<int64_t>(0, end - sliding_window) : 0;
    const int num = static_cast<int>((end - 1) / split_keys - begin / split_keys + 1);
    for (int s = 0; s < num; ++s) {
      const int64_t b = s == 0 ? begin : (begin / split_keys + s) * split_keys;
      const int64_t e = std::min(end, (begin / split_keys + s + 1) * split_keys);
      splits.push_back({i, b, e, num == 1 ? -1 : *num_partials + s});
    }
    if (num > 1) {
      merges->push_back({i, *num_partials, num});
      *num_partials += num;
    }
  }
  return splits;
}

}  // namespace

void PagedAttention(CpuContext& ctx, const BatchPlan& plan, const KvCacheSpec& spec,
                    KvLayerView layer, const float* q, const AttentionParams& params, float* out) {
  AttentionGeometry g;
  g.group = params.num_heads / params.num_kv_heads;
  g.num_heads = params.num_heads;
  g.head_dim = params.head_dim;
  g.q_row_stride = static_cast<int64_t>(params.num_heads) * params.head_dim;
  g.kv_token_stride = static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
  g.kv_bytes = DTypeBytes(spec.dtype, 1);
  const std::vector<AttentionTask> tiles = MakeTileTasks(plan, params.num_kv_heads, g.group);
  std::vector<DecodeMerge> merges;
  int64_t num_partials = 0;
  const std::vector<DecodeSplit> splits =
      MakeDecodeSplits(plan, spec, params.sliding_window, &merges, &num_partials);
  float* partials = ctx.shared_scratch.Get(num_partials * DecodePartialFloats(g));

  // One job for both kinds of work, longest first so no long task starts last.
  struct Work {
    int64_t cost;
    int64_t index;  // < tiles.size(): a tile; otherwise a decode split
  };
  std::vector<Work> work;
  work.reserve(tiles.size() + splits.size());
  for (size_t i = 0; i < tiles.size(); ++i)
    work.push_back({tiles[i].cost, static_cast<int64_t>(i)});
  for (size_t i = 0; i < splits.size(); ++i) {
    work.push_back({(splits[i].key_end - splits[i].key_begin) * params.num_heads,
                    static_cast<int64_t>(tiles.size() + i)});
  }
  std::stable_sort(work.begin(), work.end(),
                   [](const Work& a, const Work& b) { return a.cost > b.cost; });
  ctx.pool->Run(static_cast<int64_t>(work.size()), [&](int64_t w, int thread) {
    const int64_t i = work[w].index;
    if (i < static_cast<int64_t>(tiles.size())) {
      RunTask(ctx, thread, tiles[i], plan, spec, layer, q, params, g, out);
    } else {
      RunDecodeSplit(ctx, thread, splits[i - tiles.size()], plan, spec, layer, q, params.scale, g,
                     out, partials);
    }
  });
  ctx.pool->Run(static_cast<int64_t>(merges.size()), [&](int64_t m, int) {
    const DecodeMerge& dm = merges[m];
    MergeDecodeSplits(g, partials + dm.first_partial * DecodePartialFloats(g), dm.num_splits,
                      out + plan.sequences[dm.seq].query_start * g.q_row_stride);
  });
}

}  // namespace tokenmill::cpu
