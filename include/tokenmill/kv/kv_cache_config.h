// Geometry of the paged KV cache as kv/ sees it: how many blocks, how many tokens per
// block. kv/ deals in block ids only; the bytes live in backend/ (KvCacheSpec).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tokenmill {

struct KvCacheConfig {
  int num_blocks = 0;   // physical blocks in the pool; > 0
  int block_size = 16;  // tokens per block; > 0
  // Automatic prefix caching: full blocks are registered under a chained content hash and
  // reused by later sequences with the same leading tokens.
  bool enable_prefix_caching = true;

  // InvalidArgument naming the field when a value is out of range.
  absl::Status Validate() const;
};

// Blocks that fit in `budget_bytes` of KV memory, for a model that needs `bytes_per_token`
// bytes per token (all layers, K and V; backend's KvCacheSpec::BytesPerToken()).
// InvalidArgument when an argument is not positive or the budget holds no block at all.
absl::StatusOr<int> NumBlocksForBudget(int64_t budget_bytes, int64_t bytes_per_token,
                                       int block_size);

}  // namespace tokenmill
