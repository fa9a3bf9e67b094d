// Shared by the attention drivers (attention.cc: prefill tiles and the step driver;
// attention_decode.cc: split-K decode). Internal to the CPU backend.
#pragma once

#include <cstdint>

#include "backend/cpu/ops.h"

namespace tokenmill::cpu {

// Keys scored before each softmax update: amortises the per-row bookkeeping over several
// blocks (decode rows are few, so that bookkeeping would otherwise rival the K/V reads).
inline constexpr int kChunkKeys = 128;

struct AttentionGeometry {
  int group;  // query heads per KV head
  int num_heads;
  int head_dim;
  int64_t q_row_stride;     // num_heads * head_dim
  int64_t kv_token_stride;  // num_kv_heads * head_dim
  size_t kv_bytes;          // bytes per cached element
};

struct TileState {
  float* q;     // [rows, head_dim], pre-scaled
  float* o;     // [rows, head_dim]
  float* s;     // [rows, lds] scores of the current chunk of keys
  float* p;     // [rows, lds] their probabilities
  float* m;     // [rows] running max
  float* l;     // [rows] running sum
  int32_t* lo;  // [rows] first visible key position
  int32_t* hi;  // [rows] one past the last visible key position
};

// Online-softmax update for one chunk of keys [chunk_start, chunk_start + width): leaves
// p[r, :] = exp(s - running max) (0 where masked) and rescales l and o.
void SoftmaxChunk(const KernelTable& kt, const TileState& st, int rows, int64_t chunk_start,
                  int width, int lds, int head_dim);

// Walks a sequence's cached tokens in position order through its block table: get() is
// the first byte of the token at the current position (all KV heads, in one layer's K or
// V). Divides once, at construction, not per token.
class KvCursor {
 public:
  KvCursor(const BatchSequence& seq, int block_size, const AttentionGeometry& g,
           const uint8_t* cache, int64_t pos)
      : table_(seq.block_table.data()),
        block_size_(block_size),
        token_bytes_(g.kv_token_stride * static_cast<int64_t>(g.kv_bytes)),
        cache_(cache),
        block_(pos / block_size),
        offset_(static_cast<int>(pos % block_size)) {}

  const uint8_t* get() const {
    return cache_ + (static_cast<int64_t>(table_[block_]) * block_size_ + offset_) * token_bytes_;
  }
  void Next() {
    if (++offset_ == block_size_) {
      offset_ = 0;
      ++block_;
    }
  }

 private:
  const int32_t* table_;
  int block_size_;
  int64_t token_bytes_;
  const uint8_t* cache_;
  int64_t block_;
  int offset_;
};

// Decode: one query row per sequence, keys [key_begin, key_end) of one split, all heads.
struct DecodeSplit {
  int32_t seq;
  int64_t key_begin;
  int64_t key_end;
  int64_t partial;  // index of this split's partial state; -1: the only split, write out
};

// Keys per decode split (whole blocks): fixed, so results do not depend on thread count.
int64_t DecodeSplitKeys(const KvCacheSpec& spec);
// Floats of one split's partial state: o [num_heads, head_dim], m [num_heads], l [num_heads].
inline int64_t DecodePartialFloats(const AttentionGeometry& g) {
  return static_cast<int64_t>(g.num_heads) * (g.head_dim + 2);
}
void RunDecodeSplit(CpuContext& ctx, int thread, const DecodeSplit& split, const BatchPlan& plan,
                    const KvCacheSpec& spec, KvLayerView layer, const float* q, float scale,
                    const AttentionGeometry& g, float* out, float* partials);
// Combines `num_splits` consecutive partial states (in split order) into the output row.
void MergeDecodeSplits(const AttentionGeometry& g, const float* partials, int num_splits,
                       float* out_row);

}  // namespace tokenmill::cpu
