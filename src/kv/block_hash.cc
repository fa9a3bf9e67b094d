#include "tokenmill/kv/block_hash.h"

#include <xxhash.h>

namespace tokenmill {
namespace {
// Arbitrary odd constant so the root of "no extra key" is not the hash of zero bytes.
constexpr uint64_t kRootSeed = 0x9e3779b97f4a7c15ull;
}  // namespace

BlockHash RootBlockHash(uint64_t extra_key) {
  return XXH3_64bits_withSeed(&extra_key, sizeof(extra_key), kRootSeed);
}

BlockHash HashBlockTokens(BlockHash parent, std::span<const int32_t> tokens) {
  // Seeding with the parent (rather than hashing it with the tokens) keeps one pass over
  // the block's bytes; XXH3 mixes the seed into every lane.
  return XXH3_64bits_withSeed(tokens.data(), tokens.size_bytes(), parent);
}

}  // namespace tokenmill
