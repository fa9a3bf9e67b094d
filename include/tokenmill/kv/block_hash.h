// Content hashes that identify a full KV block for prefix caching (vLLM v1 style).
//
// A block's hash chains its parent's hash with its own token ids, so equal hashes mean
// equal prefixes (up to a 64-bit collision, which the pool further guards against by
// comparing the parent hash and the tokens). The first block's parent is the root hash
// of an `extra_key` (LoRA adapter, tenant salt, ...), so different keys never share.
#pragma once

#include <cstdint>
#include <span>

namespace tokenmill {

using BlockHash = uint64_t;

// Parent hash of a sequence's first block. extra_key 0 means "no extra key".
BlockHash RootBlockHash(uint64_t extra_key);

// XXH3-64 of the token ids (as little-endian int32) seeded with the parent's hash.
BlockHash HashBlockTokens(BlockHash parent, std::span<const int32_t> tokens);

}  // namespace tokenmill
