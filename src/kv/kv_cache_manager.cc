#include "tokenmill/kv/kv_cache_manager.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill {

KvCacheManager::KvCacheManager(const KvCacheConfig& config)
    : pool_(config.num_blocks, config.block_size),
      enable_prefix_caching_(config.enable_prefix_caching) {}

KvStats KvCacheManager::stats() const {
  KvStats s;
  s.num_blocks = pool_.num_blocks();
  s.num_used_blocks = pool_.num_used_blocks();
  s.num_free_blocks = pool_.num_free_blocks();
  s.num_cached_free_blocks = pool_.num_cached_free_blocks();
  s.num_cached_blocks = pool_.num_cached_blocks();
  s.prefix_query_tokens = prefix_query_tokens_;
  s.prefix_hit_tokens = prefix_hit_tokens_;
  s.num_evictions = pool_.num_evictions();
  s.num_cow_copies = num_cow_copies_;
  return s;
}

KvCacheManager::SeqBlocks& KvCacheManager::Get(SeqId seq) {
  const auto it = seqs_.find(seq);
  TM_CHECK(it != seqs_.end(), "unknown sequence ", seq);
  return it->second;
}

const KvCacheManager::SeqBlocks& KvCacheManager::Get(SeqId seq) const {
  const auto it = seqs_.find(seq);
  TM_CHECK(it != seqs_.end(), "unknown sequence ", seq);
  return it->second;
}

std::span<const BlockId> KvCacheManager::block_table(SeqId seq) const { return Get(seq).blocks; }

int KvCacheManager::num_computed_tokens(SeqId seq) const { return Get(seq).num_computed_tokens; }

PrefixMatch KvCacheManager::MatchPrefix(std::span<const int32_t> tokens, uint64_t extra_key) const {
  PrefixMatch match;
  match.num_query_tokens = static_cast<int>(tokens.size());
  BlockHash hash = RootBlockHash(extra_key);
  const int bs = block_size();
  // Cap below the full length: the last token's logits are what the caller needs.
  const int max_blocks = tokens.empty() ? 0 : (static_cast<int>(tokens.size()) - 1) / bs;
  for (int i = 0; enable_prefix_caching_ && i < max_blocks; ++i) {
    const std::span<const int32_t> block_tokens = tokens.subspan(static_cast<size_t>(i) * bs, bs);
    const BlockHash next = HashBlockTokens(hash, block_tokens);
    const std::optional<BlockId> block = pool_.Lookup(next, hash, block_tokens);
    // A miss ends the run: later blocks chain from this one, so they cannot hit either
    // (unless evicted out of order, which a miss here makes unreachable anyway).
    if (!block) break;
    match.blocks.push_back(*block);
    hash = next;
  }
  match.last_hash = hash;
  match.num_cached_tokens = static_cast<int>(match.blocks.size()) * bs;
  return match;
}

int KvCacheManager::NumBlocksToAdd(const PrefixMatch& match, int num_new_tokens) const {
  const int num_matched = static_cast<int>(match.blocks.size());
  int needed = NumBlocksFor(match.num_cached_tokens + num_new_tokens) - num_matched;
  for (const BlockId block : match.blocks) {
    if (pool_.ref_count(block) == 0) ++needed;  // a hit takes it off the evictable list
  }
  return needed;
}

bool KvCacheManager::AddSequence(SeqId seq, const PrefixMatch& match, int num_new_tokens,
                                 int reserve_blocks) {
  TM_CHECK(!seqs_.contains(seq), "sequence ", seq, " already has a block table");
  TM_CHECK(num_new_tokens >= 0, "num_new_tokens ", num_new_tokens);
  if (NumBlocksToAdd(match, num_new_tokens) > pool_.num_available_blocks() - reserve_blocks) {
    return false;
  }
  SeqBlocks s;
  s.blocks.reserve(NumBlocksFor(match.num_cached_tokens + num_new_tokens));
  // Take the hits before allocating, so allocation cannot evict a block we are reusing.
  for (const BlockId block : match.blocks) {
    pool_.Ref(block);
    s.blocks.push_back(block);
  }
  const int num_total = NumBlocksFor(match.num_cached_tokens + num_new_tokens);
  while (static_cast<int>(s.blocks.size()) < num_total) {
    const std::optional<BlockId> block = pool_.Allocate();
    TM_CHECK(block.has_value(), "pool ran dry after the capacity check");
    s.blocks.push_back(*block);
  }
  s.num_computed_tokens = match.num_cached_tokens;
  s.num_hashed_blocks = static_cast<int>(match.blocks.size());
  s.last_hash = match.last_hash;
  seqs_.emplace(seq, std::move(s));
  prefix_query_tokens_ += match.num_query_tokens;
  prefix_hit_tokens_ += match.num_cached_tokens;
  return true;
}

int KvCacheManager::CowIndex(const SeqBlocks& s, int num_new_tokens) const {
  if (num_new_tokens == 0 || !s.may_share_partial) return -1;
  const int index = s.num_computed_tokens / block_size();
  if (index >= static_cast<int>(s.blocks.size())) return -1;
  return pool_.ref_count(s.blocks[index]) > 1 ? index : -1;
}

int KvCacheManager::NumBlocksToAllocate(SeqId seq, int num_new_tokens) const {
  const SeqBlocks& s = Get(seq);
  const int grow =
      NumBlocksFor(s.num_computed_tokens + num_new_tokens) - static_cast<int>(s.blocks.size());
  return std::max(grow, 0) + (CowIndex(s, num_new_tokens) >= 0 ? 1 : 0);
}

int KvCacheManager::MaxAllocatableTokens(SeqId seq) const {
  const SeqBlocks& s = Get(seq);
  // A copy-on-write replaces a block rather than adding one, but still takes one.
  const int spare = pool_.num_available_blocks() - (CowIndex(s, 1) >= 0 ? 1 : 0);
  if (spare < 0) return 0;
  return (static_cast<int>(s.blocks.size()) + spare) * block_size() - s.num_computed_tokens;
}

bool KvCacheManager::Allocate(SeqId seq, int num_new_tokens, std::vector<BlockCopy>* copies) {
  TM_CHECK(num_new_tokens >= 0, "num_new_tokens ", num_new_tokens);
  SeqBlocks& s = Get(seq);
  const int target = NumBlocksFor(s.num_computed_tokens + num_new_tokens);
  const int cow = CowIndex(s, num_new_tokens);
  const int needed = std::max(target - static_cast<int>(s.blocks.size()), 0) + (cow >= 0 ? 1 : 0);
  if (needed > pool_.num_available_blocks()) return false;
  // From here the block being written is private until the next Fork.
  if (num_new_tokens > 0) s.may_share_partial = false;
  if (needed == 0) return true;  // the common decode step: room in the last block
  if (cow >= 0) {
    // The fork sibling keeps reading the shared block; this sequence writes a private copy.
    const BlockId shared = s.blocks[cow];
    const BlockId own = *pool_.Allocate();
    if (s.num_computed_tokens % block_size() != 0) {
      copies->push_back({shared, own});
      copy_sources_.push_back(shared);
      ++num_cow_copies_;
    }
    pool_.Unref(shared);
    s.blocks[cow] = own;
  }
  while (static_cast<int>(s.blocks.size()) < target) s.blocks.push_back(*pool_.Allocate());
  return true;
}

void KvCacheManager::MarkComputed(SeqId seq, std::span<const int32_t> tokens,
                                  int num_computed_tokens) {
  SeqBlocks& s = Get(seq);
  const int bs = block_size();
  TM_CHECK(num_computed_tokens >= s.num_computed_tokens &&
               num_computed_tokens <= static_cast<int>(s.blocks.size()) * bs &&
               num_computed_tokens <= static_cast<int>(tokens.size()),
           "sequence ", seq, ": computed ", s.num_computed_tokens, " -> ", num_computed_tokens,
           " with ", s.blocks.size(), " blocks and ", tokens.size(), " tokens");
  s.num_computed_tokens = num_computed_tokens;
  if (!enable_prefix_caching_) return;
  const int num_full = num_computed_tokens / bs;
  for (int i = s.num_hashed_blocks; i < num_full; ++i) {
    const std::span<const int32_t> block_tokens = tokens.subspan(static_cast<size_t>(i) * bs, bs);
    const BlockHash hash = HashBlockTokens(s.last_hash, block_tokens);
    // A false return means an identical block is already cached; this one stays private
    // and simply goes back to the free list when released.
    (void)pool_.Register(s.blocks[i], hash, s.last_hash, block_tokens);
    s.last_hash = hash;
  }
  s.num_hashed_blocks = std::max(s.num_hashed_blocks, num_full);
}

void KvCacheManager::Fork(SeqId parent, SeqId child) {
  TM_CHECK(!seqs_.contains(child), "fork target ", child, " already has a block table");
  SeqBlocks c = Get(parent);
  // Blocks past the computed tokens are only reserved room; the child gets its own later.
  c.blocks.resize(NumBlocksFor(c.num_computed_tokens));
  for (const BlockId block : c.blocks) pool_.Ref(block);
  const bool shares_partial = c.num_computed_tokens % block_size() != 0;
  c.may_share_partial = shares_partial;
  seqs_.emplace(child, std::move(c));
  Get(parent).may_share_partial = shares_partial;
}

void KvCacheManager::Free(SeqId seq) {
  const auto it = seqs_.find(seq);
  TM_CHECK(it != seqs_.end(), "Free of unknown sequence ", seq);
  const std::vector<BlockId>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) {
    // Reused within the step, a pending copy's source could become another copy's
    // destination, and the copies of a step run as one batch.
    if (pool_.ref_count(*b) == 1 &&
        std::find(copy_sources_.begin(), copy_sources_.end(), *b) != copy_sources_.end()) {
      held_blocks_.push_back(*b);
      continue;
    }
    pool_.Unref(*b);
  }
  seqs_.erase(it);
}

void KvCacheManager::ReleaseCopySources() {
  for (const BlockId block : held_blocks_) pool_.Unref(block);
  held_blocks_.clear();
  copy_sources_.clear();
}

absl::Status KvCacheManager::CheckInvariants() const {
  TM_RETURN_IF_ERROR(pool_.CheckConsistency());
  const int n = pool_.num_blocks();
  const int bs = block_size();
  std::vector<int> refs(n, 0);
  for (const auto& [seq, s] : seqs_) {
    if (static_cast<int>(s.blocks.size()) < NumBlocksFor(s.num_computed_tokens)) {
      return absl::InternalError(absl::StrCat("sequence ", seq, " has ", s.blocks.size(),
                                              " blocks for ", s.num_computed_tokens,
                                              " computed tokens"));
    }
    if (s.num_hashed_blocks > s.num_computed_tokens / bs) {
      return absl::InternalError(absl::StrCat("sequence ", seq, " hashed ", s.num_hashed_blocks,
                                              " blocks but computed ", s.num_computed_tokens,
                                              " tokens"));
    }
    for (const BlockId block : s.blocks) {
      if (block < 0 || block >= n) {
        return absl::InternalError(absl::StrCat("sequence ", seq, " names bad block ", block));
      }
      ++refs[block];
    }
  }
  for (const BlockId block : held_blocks_) ++refs[block];
  for (BlockId block = 0; block < n; ++block) {
    if (refs[block] != pool_.ref_count(block)) {
      return absl::InternalError(absl::StrCat("block ", block, " has ref_count ",
                                              pool_.ref_count(block), " but ", refs[block],
                                              " table entries and holds"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tokenmill
