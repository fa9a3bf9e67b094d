// Attention metadata derived once per step from a BatchPlan, shared by all backends:
// PlanStep() validates the plan against the KV-cache geometry and precomputes where each
// new token's K/V goes. Plain host data; a device backend uploads what it needs.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/backend/backend.h"

namespace tokenmill {

struct StepMetadata {
  // [num_tokens] cache slot of each new token: block_id * block_size + position % block_size.
  std::vector<int64_t> slot_mapping;
  // [num_tokens] index into plan.sequences of the sequence that owns each row.
  std::vector<int32_t> token_sequence;
  int32_t max_query_len = 0;         // longest num_query_tokens in the step
  int32_t max_context_len = 0;       // longest context_len in the step
  int32_t num_decode_sequences = 0;  // sequences with exactly one query row
};

// Checks every invariant the ops rely on and returns the step's metadata. Errors are
// InvalidArgument and name the offending field, e.g. "sequences[2].block_table[1]":
//   - positions.size() == token_ids.size(); token ids are >= 0;
//   - sequences tile the token rows in order: query_start of the first is 0, each starts
//     where the previous ended, the last ends at num_tokens; num_query_tokens >= 1;
//   - 1 <= num_query_tokens <= context_len, and the rows of a sequence hold positions
//     context_len - num_query_tokens ... context_len - 1 in order;
//   - block_table covers ceil(context_len / block_size) blocks, ids in [0, num_blocks),
//     no block twice in one table, and no two new tokens of the step share a cache slot;
//   - logits_rows are in [0, num_tokens).
// Requires: spec.block_size >= 1 (a KV cache has been allocated).
absl::StatusOr<StepMetadata> BuildStepMetadata(const BatchPlan& plan, const KvCacheSpec& spec);

}  // namespace tokenmill
