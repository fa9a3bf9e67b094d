// Tensor-parallel sharding at load time (Megatron style): from a whole LoadedModel, the
// LoadedModel of one rank of N.
//
//   q/k/v, gate/up   column-parallel: rows of [out, in] (a view, no copy); q/k/v biases
//                    follow their rows. Each rank gets num_heads / N query heads and
//                    intermediate_size / N FFN columns.
//   KV heads         divided when N divides num_kv_heads; otherwise (N a multiple of
//                    num_kv_heads) replicated: each rank holds the one KV head its query
//                    heads read, shared with N / num_kv_heads - 1 other ranks.
//   o_proj, down     row-parallel: the rank's columns of [out, in], copied into memory the
//                    shard owns (a strided copy); their outputs are partial sums that the
//                    model all-reduces. Q8_0 splits must fall on 32-element block bounds.
//   lm_head          vocab-parallel: rows [start, start + size) of [vocab, hidden]
//                    (VocabShard; vocab % N != 0 is fine); the model gathers the logits.
//   embedding, norms replicated (views). The embedding lookup reads one row per token, so
//                    sharding it would save memory only, at the cost of an all-reduce.
//
// The shard's config carries the rank's num_heads, num_kv_heads and intermediate_size and
// the tp_* fields; hidden_size, vocab_size and head_dim stay whole.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tokenmill/model/weights.h"

namespace tokenmill {

struct VocabRange {
  int start = 0;
  int size = 0;
};

// Rank `rank`'s vocab rows: sizes differ by at most one, the first vocab % N ranks get
// the extra row. Requires: 0 <= rank < world_size <= vocab_size.
VocabRange VocabShard(int vocab_size, int rank, int world_size);
// Largest shard, ceil(vocab_size / world_size): the padded size of a logits gather.
int MaxVocabShardSize(int vocab_size, int world_size);

// The KV heads rank `rank` holds: [start, start + size) of the model's KV heads.
// Requires: CheckShardable(config, world_size) is OK.
struct HeadRange {
  int start = 0;
  int size = 0;
};
HeadRange KvHeadShard(const ModelConfig& config, int rank, int world_size);

// Whether `config` splits over `world_size` ranks: num_heads and intermediate_size
// divisible by N, num_kv_heads divisible by N or dividing it, vocab_size >= N. The error
// names the field and suggests the sizes that work.
absl::Status CheckShardable(const ModelConfig& config, int world_size);
// The same, plus dtype constraints of the weights (Q8_0 row-parallel splits).
absl::Status CheckShardable(const LoadedModel& model, int world_size);

// Rank `rank`'s shard of `model`. The shard borrows `model`'s bytes (views into its maps
// and buffers): `model` must outlive it. world_size 1 gives a view of the whole model.
absl::StatusOr<std::unique_ptr<LoadedModel>> ShardModel(const LoadedModel& model, int rank,
                                                        int world_size);

}  // namespace tokenmill
