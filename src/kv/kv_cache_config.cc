#include "tokenmill/kv/kv_cache_config.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace tokenmill {

absl::Status KvCacheConfig::Validate() const {
  if (num_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv.num_blocks must be > 0, got ", num_blocks));
  }
  if (block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv.block_size must be > 0, got ", block_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> NumBlocksForBudget(int64_t budget_bytes, int64_t bytes_per_token,
                                       int block_size) {
  if (budget_bytes <= 0 || bytes_per_token <= 0 || block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV budget: budget_bytes (", budget_bytes, "), bytes_per_token (",
                     bytes_per_token, ") and block_size (", block_size, ") must all be > 0"));
  }
  const int64_t block_bytes = bytes_per_token * block_size;
  const int64_t num_blocks = budget_bytes / block_bytes;
  if (num_blocks == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV budget of ", budget_bytes, " bytes holds no block of ", block_bytes, " bytes"));
  }
  if (num_blocks > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV budget of ", budget_bytes, " bytes gives ", num_blocks,
                     " blocks, more than block ids can address; raise block_size"));
  }
  return static_cast<int>(num_blocks);
}

}  // namespace tokenmill
