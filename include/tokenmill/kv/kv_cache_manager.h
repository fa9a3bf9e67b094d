// KvCacheManager: per-sequence block tables over a BlockPool, with automatic prefix
// caching and copy-on-write for forked sequences. Block ids only, never bytes.
//
// Lifecycle of one sequence, as the scheduler drives it:
//   m = MatchPrefix(tokens, key)           which leading full blocks are cached
//   AddSequence(seq, m, n)                 table = cached blocks + room for n new tokens
//   ... each step:
//   Allocate(seq, n, &copies)              room for n more tokens (maybe a CoW copy)
//   [engine runs the step, writing KV for the new tokens]
//   MarkComputed(seq, tokens, computed)    KV now valid; newly full blocks get cached
//   Fork(seq, child)                       child shares every block (n > 1 sampling)
//   Free(seq)                              finish / abort / preemption
//
// A block is registered in the prefix cache only once MarkComputed says its KV has been
// written, so a failed step never leaves garbage reachable through the cache.
//
// Not thread-safe: one owner (the engine's step thread). Spans returned by accessors stay
// valid until the next non-const call.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "tokenmill/kv/block_hash.h"
#include "tokenmill/kv/block_pool.h"
#include "tokenmill/kv/kv_cache_config.h"

namespace tokenmill {

// Scheduler-assigned id of one decoding stream.
using SeqId = int64_t;

// A block copy the engine must perform on the backend before the step's KV writes: the
// sequence that was sharing `src` (a partial block) now owns `dst` instead.
struct BlockCopy {
  BlockId src = -1;
  BlockId dst = -1;
  bool operator==(const BlockCopy&) const = default;
};

// Result of a prefix-cache lookup. Valid until the next non-const call on the manager.
struct PrefixMatch {
  std::vector<BlockId> blocks;  // cached leading full blocks, in sequence order
  BlockHash last_hash = 0;      // chain hash after the last matched block (root if none)
  int num_query_tokens = 0;     // tokens that were looked up
  int num_cached_tokens = 0;    // blocks.size() * block_size
};

// Figures for metrics. Gauges are current; counters are totals since construction.
struct KvStats {
  int num_blocks = 0;
  int num_used_blocks = 0;          // referenced by at least one table
  int num_free_blocks = 0;          // unreferenced, not cached
  int num_cached_free_blocks = 0;   // unreferenced, cached, evictable
  int num_cached_blocks = 0;        // registered in the prefix cache (used or not)
  int64_t prefix_query_tokens = 0;  // tokens looked up by admitted sequences
  int64_t prefix_hit_tokens = 0;    // of those, tokens served from the cache
  int64_t num_evictions = 0;        // cached-free blocks reclaimed for new data
  int64_t num_cow_copies = 0;       // BlockCopy entries handed out
};

class KvCacheManager {
 public:
  // Requires: config.Validate().ok().
  explicit KvCacheManager(const KvCacheConfig& config);

  int block_size() const { return pool_.block_size(); }
  int num_blocks() const { return pool_.num_blocks(); }
  bool is_prefix_caching_enabled() const { return enable_prefix_caching_; }
  // Blocks a new allocation can use: free plus evictable cached-free.
  int num_available_blocks() const { return pool_.num_available_blocks(); }
  int num_sequences() const { return static_cast<int>(seqs_.size()); }
  KvStats stats() const;

  // The longest run of cached leading full blocks of `tokens` under `extra_key`. Never the
  // whole sequence: at most (tokens.size() - 1) / block_size blocks, so at least the last
  // token is computed and its logits exist. Empty when prefix caching is off.
  PrefixMatch MatchPrefix(std::span<const int32_t> tokens, uint64_t extra_key) const;

  // Blocks AddSequence(…, match, num_new_tokens, …) would take from the available pool,
  // counting matched blocks that are cached-free (a hit takes them off the LRU list).
  int NumBlocksToAdd(const PrefixMatch& match, int num_new_tokens) const;

  // Creates `seq`'s table from `match` plus room for `num_new_tokens` tokens after the
  // cached ones. Returns false, changing nothing, unless at least `reserve_blocks` would
  // still be available afterwards. Counts the lookup in the prefix-cache figures.
  // Requires: !Contains(seq); `match` comes from MatchPrefix with no mutation since.
  // The extra key travels in match.last_hash.
  [[nodiscard]] bool AddSequence(SeqId seq, const PrefixMatch& match, int num_new_tokens,
                                 int reserve_blocks = 0);

  // Blocks Allocate(seq, num_new_tokens) would take, including a copy-on-write block.
  int NumBlocksToAllocate(SeqId seq, int num_new_tokens) const;

  // The most new tokens Allocate(seq, n) can take right now (0 when not even one).
  int MaxAllocatableTokens(SeqId seq) const;

  // Grows `seq`'s table to hold num_computed_tokens(seq) + num_new_tokens tokens. If the
  // first block to be written is a partial block shared with a fork, `seq` gets a fresh
  // block instead and the copy to perform is appended to `copies`. Returns false, changing
  // nothing, when the pool cannot supply the blocks (after evicting cached-free ones).
  // Requires: Contains(seq), num_new_tokens >= 0.
  [[nodiscard]] bool Allocate(SeqId seq, int num_new_tokens, std::vector<BlockCopy>* copies);

  // Records that the KV of tokens [0, num_computed_tokens) of `seq` is written, and
  // registers every block that became full in the prefix cache (hash chained from the
  // previous block). `tokens` are the sequence's token ids, at least num_computed_tokens.
  // Requires: num_computed_tokens(seq) <= num_computed_tokens <= capacity of the table.
  void MarkComputed(SeqId seq, std::span<const int32_t> tokens, int num_computed_tokens);

  // `child` starts as a copy of `parent`: same computed tokens, sharing every block that
  // holds them (reference counts go up; the shared partial block is copied on write).
  // Requires: Contains(parent), !Contains(child).
  void Fork(SeqId parent, SeqId child);

  // Releases every block of `seq` (last block first, so a prefix's tail is evicted before
  // its head). Full cached blocks stay reusable until evicted. A block that is the source
  // of a copy handed out since the last ReleaseCopySources() is held back instead, so no
  // allocation can receive it (as a copy destination, say) while that copy is pending.
  // Requires: Contains(seq).
  void Free(SeqId seq);

  // Ends the planning of a step: its copies are fixed, and blocks Free() held back for
  // them return to the pool. The scheduler calls it at the end of each Schedule().
  void ReleaseCopySources();

  bool Contains(SeqId seq) const { return seqs_.contains(seq); }
  // Physical block ids of `seq`, in token order. Requires: Contains(seq).
  std::span<const BlockId> block_table(SeqId seq) const;
  int num_computed_tokens(SeqId seq) const;

  // Forgets every cached-free block (e.g. after a weight reload). Returns how many.
  int ResetPrefixCache() { return pool_.DropCachedFreeBlocks(); }

  // Every block is exactly one of free, cached-free or referenced; each reference count
  // equals the table entries naming the block; the hash index matches the blocks; tables
  // cover their computed tokens. Error message names the broken rule. O(blocks + entries).
  absl::Status CheckInvariants() const;

 private:
  struct SeqBlocks {
    std::vector<BlockId> blocks;
    int num_computed_tokens = 0;
    int num_hashed_blocks = 0;  // leading blocks whose chain hash is known
    BlockHash last_hash = 0;    // chain hash after num_hashed_blocks blocks
    // The partial block being written may be shared with a fork (only Fork shares partial
    // blocks); spares the pool lookup on the common decode path.
    bool may_share_partial = false;
  };

  SeqBlocks& Get(SeqId seq);
  const SeqBlocks& Get(SeqId seq) const;
  int NumBlocksFor(int num_tokens) const { return (num_tokens + block_size() - 1) / block_size(); }
  // Index of a shared partial block `s` must copy before writing, or -1.
  int CowIndex(const SeqBlocks& s, int num_new_tokens) const;

  BlockPool pool_;
  bool enable_prefix_caching_;
  absl::flat_hash_map<SeqId, SeqBlocks> seqs_;
  std::vector<BlockId> copy_sources_;  // CoW sources since the last ReleaseCopySources()
  std::vector<BlockId> held_blocks_;   // of those, freed by every table: one held reference
  int64_t prefix_query_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
  int64_t num_cow_copies_ = 0;
};

}  // namespace tokenmill
