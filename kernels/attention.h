// Launchers for paged attention over the KV cache: a split-K decode kernel ("flash
// decoding"), a tensor-core prefill kernel for chunked prefill, and a generic kernel for
// every shape or dtype the fast paths do not cover. All three read the block tables
// directly and are GQA-aware: the query heads of a KV group share each K/V load.
//
// Semantics (all kernels): sequence s has num_query[s] new tokens at positions
// [context_len[s] - num_query[s], context_len[s]), rows [query_start[s], +num_query[s])
// of q and out. Query token at position p attends to cached keys at positions [0, p],
// or (p - sliding_window, p] with a window (the cache already holds this step's keys).
// out = softmax(scale * q k^T) v per head.
#pragma once

#include <cstddef>

#include "kernels/types.h"

namespace tokenmill::kernels {

// The paged KV cache of one layer: K and V each [num_blocks * block_size, num_kv_heads,
// head_dim] of `type`. Sequence s's token at position p lives in slot
// block_tables[s * block_table_stride + p / block_size] * block_size + p % block_size.
struct PagedKv {
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  ScalarType type = ScalarType::kBF16;
  int block_size = 16;
  const int32_t* block_tables = nullptr;
  int block_table_stride = 0;
};

// Per-sequence metadata ([num_seqs] device arrays) and the sequences one launch handles.
struct AttentionBatch {
  const int32_t* query_start = nullptr;
  const int32_t* num_query = nullptr;
  const int32_t* context_len = nullptr;  // 0: padding sequence, its rows are zeroed
  const int32_t* seq_ids = nullptr;      // [num_selected] indices into the arrays above
  int num_selected = 0;
  int max_query_len = 0;  // >= num_query of every selected sequence (sizes the grid)
};

struct AttentionArgs {
  const void* q = nullptr;  // [rows, num_heads * head_dim] of act_type (kF32 or kBF16)
  void* out = nullptr;      // same shape and type as q
  ScalarType act_type = ScalarType::kF32;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;
  // 0: full causal attention; else a query at position p sees keys (p - window, p].
  int sliding_window = 0;
  PagedKv kv;
  AttentionBatch batch;
};

// --- decode: one query token per selected sequence (num_query == 1) -----------------
// True when the split-K kernel handles these shapes: kF16/kBF16 cache, head_dim 64 or
// 128, at most 8 query heads per KV head.
bool DecodeAttentionFastPath(const AttentionArgs& args);
// Upper bound on splits over the context per sequence.
inline constexpr int kMaxDecodeSplits = 64;
// Splits for a decode launch: enough blocks to fill the SMs twice over, at least 128
// tokens per split, a power of two (so that CUDA-graph keys, which include it, stay few as
// contexts grow), at most kMaxDecodeSplits.
int ChooseDecodeSplits(int num_seqs, int num_kv_heads, int max_context, int num_sms);
// Scratch the decode launcher needs for partial results (0 when num_splits == 1).
size_t DecodeAttentionWorkspaceBytes(int num_selected, int num_heads, int head_dim,
                                     int num_splits);
// Each selected sequence's context is cut into num_splits (1..kMaxDecodeSplits) ranges
// processed by separate blocks, then merged. Requires: DecodeAttentionFastPath(args);
// workspace of DecodeAttentionWorkspaceBytes(...) bytes, 16-byte aligned.
cudaError_t LaunchPagedDecodeAttention(const AttentionArgs& args, int num_splits,
                                       void* workspace, cudaStream_t stream);

// --- prefill: any number of query tokens per selected sequence ----------------------
// True when the tensor-core kernel (mma.sync, sm_80+) handles these shapes: kF16/kBF16
// cache, head_dim 64 or 128, at most 16 query heads per KV head.
bool PrefillAttentionFastPath(const AttentionArgs& args);
cudaError_t LaunchPagedPrefillAttention(const AttentionArgs& args, cudaStream_t stream);

// --- generic: any cache type, head_dim <= 512, any grouping; one block per query row
// and head, scalar arithmetic in fp32. The reference the fast paths are tested against.
cudaError_t LaunchPagedAttentionGeneric(const AttentionArgs& args, cudaStream_t stream);

}  // namespace tokenmill::kernels
