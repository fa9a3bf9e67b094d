// BlockPool: the physical KV blocks, their reference counts and the prefix-cache index.
//
// Every block is in exactly one state:
//   free         ref_count 0, no hash; on `free_list_`, handed out first.
//   cached-free  ref_count 0, registered under a hash; on the LRU list, still reusable by a
//                prefix hit, evicted (least recently released first) only when no free
//                block is left.
//   referenced   ref_count > 0 (by block tables); may or may not be registered.
//
// The pool knows nothing of sequences: KvCacheManager keeps the tables and calls Ref/Unref.
// Block ids are dense in [0, num_blocks). Not thread-safe: one owner (the engine thread).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "tokenmill/kv/block_hash.h"

namespace tokenmill {

using BlockId = int32_t;

class BlockPool {
 public:
  // Requires: num_blocks > 0, block_size > 0.
  BlockPool(int num_blocks, int block_size);

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int block_size() const { return block_size_; }
  int num_free_blocks() const { return static_cast<int>(free_list_.size()); }
  int num_cached_free_blocks() const { return num_lru_; }
  // Blocks Allocate() can hand out: free plus cached-free (evictable).
  int num_available_blocks() const { return num_free_blocks() + num_lru_; }
  int num_used_blocks() const { return num_blocks() - num_available_blocks(); }
  // Blocks registered in the prefix cache, referenced or not.
  int num_cached_blocks() const { return static_cast<int>(cached_.size()); }
  int64_t num_evictions() const { return num_evictions_; }

  // A block with ref_count 1: a free one if any (most recently freed first), otherwise the
  // least recently released cached-free block, whose hash is dropped (an eviction).
  // nullopt when every block is referenced.
  std::optional<BlockId> Allocate();

  // One more table references `block`; a cached-free block leaves the LRU list (a hit).
  void Ref(BlockId block);
  // One table fewer. At zero a registered block becomes cached-free (LRU tail), any other
  // block becomes free. Requires: ref_count(block) > 0.
  void Unref(BlockId block);
  int ref_count(BlockId block) const { return blocks_[block].ref_count; }
  bool is_cached(BlockId block) const { return blocks_[block].is_cached; }

  // The block registered under `hash` whose parent hash and tokens also match; nullopt when
  // none (a 64-bit collision between different contents reads as a miss).
  std::optional<BlockId> Lookup(BlockHash hash, BlockHash parent,
                                std::span<const int32_t> tokens) const;
  // Registers a full, computed, referenced block under `hash`. Returns false (and leaves
  // the block unregistered) when another block already holds that hash: both hold the
  // same KV, and the first one stays the shared copy.
  // Requires: ref_count(block) > 0, !is_cached(block), tokens.size() == block_size.
  bool Register(BlockId block, BlockHash hash, BlockHash parent, std::span<const int32_t> tokens);

  // Drops every cached-free block's hash (they become free); referenced blocks keep theirs.
  // Returns the number of blocks dropped.
  int DropCachedFreeBlocks();

  // Internal consistency of lists, states and the hash index (not the reference counts,
  // which only the owner of the tables can check). The message names the broken rule.
  absl::Status CheckConsistency() const;

 private:
  struct Block {
    int32_t ref_count = 0;
    bool is_cached = false;
    BlockHash hash = 0;
    BlockHash parent_hash = 0;
    BlockId lru_prev = -1;  // valid while cached-free
    BlockId lru_next = -1;
  };

  void LruPushBack(BlockId block);
  void LruRemove(BlockId block);
  void Unregister(BlockId block);
  std::span<const int32_t> TokensOf(BlockId block) const;

  int block_size_;
  std::vector<Block> blocks_;
  // Token ids of registered blocks, block_size_ per block, to verify hits exactly.
  std::vector<int32_t> tokens_;
  std::vector<BlockId> free_list_;  // stack: back is handed out next
  BlockId lru_head_ = -1;           // evicted next
  BlockId lru_tail_ = -1;           // most recently released
  int num_lru_ = 0;
  absl::flat_hash_map<BlockHash, BlockId> cached_;
  int64_t num_evictions_ = 0;
};

}  // namespace tokenmill
