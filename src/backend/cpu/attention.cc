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

#include "backend/cpu/ops.h"

namespace tokenmill::cpu {
namespace {

// Rows of one task's tile (query tokens x heads of the group).
constexpr int kMaxTileRows = 64;
// Keys scored before each softmax update: amortises the per-row bookkeeping over several
// blocks (decode rows are few, so that bookkeeping would otherwise rival the K/V reads).
constexpr int kChunkKeys = 128;
// Tiles of at least this many rows use the GEMM micro-kernel; decode tiles (a few rows)
// use the dot-product kernels, which need no packing.
constexpr int kMinGemmRows = 16;

struct AttentionTask {
  int32_t seq;
  int32_t kv_head;
  int32_t q_begin;  // query rows [q_begin, q_end) of the sequence
  int32_t q_end;
  int64_t cost;     // keys x rows, for scheduling long tasks first
};

struct Geometry {
  int group;             // query heads per KV head
  int head_dim;
  int64_t q_row_stride;  // num_heads * head_dim
  int64_t kv_token_stride;  // num_kv_heads * head_dim
  size_t kv_bytes;       // bytes per cached element
};

struct TileState {
  float* q;    // [rows, head_dim], pre-scaled
  float* o;    // [rows, head_dim]
  float* s;    // [rows, lds] scores of the current chunk of keys
  float* p;    // [rows, lds] their probabilities
  float* m;    // [rows] running max
  float* l;    // [rows] running sum
  int32_t* lo;  // [rows] first visible key position
  int32_t* hi;  // [rows] one past the last visible key position
};

// Online-softmax update for one chunk of keys [chunk_start, chunk_start + width): leaves
// p[r, :] = exp(s - running max) (0 where masked) and rescales l and o.
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

// Loads q (pre-scaled) and the visible key range of every row of the tile.
void InitTile(const AttentionTask& task, const BatchSequence& seq, const float* q, float scale,
              int sliding_window, const Geometry& g, const TileState& st) {
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
                const Geometry& g, const uint8_t* cache, int64_t head_offset, int64_t c0,
                int64_t c1, int strip, int lds, float* out) {
  constexpr int64_t kPrefetchAhead = 16;  // rows: ~DRAM latency at one row per few ns
  const int bs = spec.block_size;
  auto row_at = [&](int64_t pos) {
    const int64_t slot = static_cast<int64_t>(seq.block_table[pos / bs]) * bs + pos % bs;
    return cache + (slot * g.kv_token_stride + head_offset) * g.kv_bytes;
  };
  const int64_t row_bytes = g.head_dim * static_cast<int64_t>(g.kv_bytes);
  for (int64_t pos = c0; pos < std::min(c1, c0 + kPrefetchAhead); ++pos) {
    for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row_at(pos) + b, 0, 3);
  }
  for (int64_t pos = c0; pos < c1; ++pos) {
    if (pos + kPrefetchAhead < c1) {
      const uint8_t* ahead = row_at(pos + kPrefetchAhead);
      for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(ahead + b, 0, 3);
    }
    if (strip == 0) {
      kt.convert_row(spec.dtype, row_at(pos), 0, g.head_dim, out + (pos - c0) * g.head_dim);
      continue;
    }
    for (int d = 0; d < g.head_dim; d += strip) {
      kt.convert_row(spec.dtype, row_at(pos), d, strip,
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
             const AttentionParams& params, const Geometry& g, float* out) {
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
  float* keys = reinterpret_cast<float*>(st.hi + rows);  // [lds, hd]
  float* values = keys + static_cast<int64_t>(lds) * hd;   // [lds, hd] or panels
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

std::vector<AttentionTask> MakeTasks(const BatchPlan& plan, int num_kv_heads, int group) {
  const int tile_tokens = std::max(1, kMaxTileRows / group);
  std::vector<AttentionTask> tasks;
  for (int32_t i = 0; i < static_cast<int32_t>(plan.sequences.size()); ++i) {
    const BatchSequence& seq = plan.sequences[i];
    for (int32_t q0 = 0; q0 < seq.num_query_tokens; q0 += tile_tokens) {
      const int32_t q1 = std::min(seq.num_query_tokens, q0 + tile_tokens);
      const int64_t keys = seq.context_len - seq.num_query_tokens + q1;
      for (int32_t h = 0; h < num_kv_heads; ++h) {
        tasks.push_back({i, h, q0, q1, keys * (q1 - q0)});
      }
    }
  }
  // Longest first, so no long task starts last; ties keep plan order.
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const AttentionTask& a, const AttentionTask& b) { return a.cost > b.cost; });
  return tasks;
}

}  // namespace

void PagedAttention(CpuContext& ctx, const BatchPlan& plan, const KvCacheSpec& spec,
                    KvLayerView layer, const float* q, const AttentionParams& params,
                    float* out) {
  Geometry g;
  g.group = params.num_heads / params.num_kv_heads;
  g.head_dim = params.head_dim;
  g.q_row_stride = static_cast<int64_t>(params.num_heads) * params.head_dim;
  g.kv_token_stride = static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
  g.kv_bytes = DTypeBytes(spec.dtype, 1);
  const std::vector<AttentionTask> tasks = MakeTasks(plan, params.num_kv_heads, g.group);
  ctx.pool->Run(static_cast<int64_t>(tasks.size()), [&](int64_t t, int thread) {
    RunTask(ctx, thread, tasks[t], plan, spec, layer, q, params, g, out);
  });
}

void WriteKv(CpuContext& ctx, const KvCacheSpec& spec, const StepMetadata& meta,
             const float* k, const float* v, KvLayerView layer) {
  const int64_t width = static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
  const int64_t num_tokens = static_cast<int64_t>(meta.slot_mapping.size());
  const size_t elem = DTypeBytes(spec.dtype, 1);
  auto write_row = [&](const float* src, void* cache, int64_t slot) {
    uint8_t* dst = static_cast<uint8_t*>(cache) + slot * width * elem;
    switch (spec.dtype) {
      case DType::kF16: {
        uint16_t* h = reinterpret_cast<uint16_t*>(dst);
        for (int64_t i = 0; i < width; ++i) h[i] = F32ToF16(src[i]);
        break;
      }
      case DType::kBF16: {
        uint16_t* h = reinterpret_cast<uint16_t*>(dst);
        for (int64_t i = 0; i < width; ++i) h[i] = F32ToBf16(src[i]);
        break;
      }
      default:
        std::memcpy(dst, src, width * sizeof(float));
    }
  };
  const int64_t rows_per_task = std::max<int64_t>(1, (1 << 14) / width);
  const int64_t num_tasks = (num_tokens + rows_per_task - 1) / rows_per_task;
  ctx.pool->Run(num_tasks, [&](int64_t task, int) {
    const int64_t end = std::min(num_tokens, (task + 1) * rows_per_task);
    for (int64_t t = task * rows_per_task; t < end; ++t) {
      write_row(k + t * width, layer.k, meta.slot_mapping[t]);
      write_row(v + t * width, layer.v, meta.slot_mapping[t]);
    }
  });
}

}  // namespace tokenmill::cpu
