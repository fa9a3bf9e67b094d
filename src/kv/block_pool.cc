#include "tokenmill/kv/block_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill {

BlockPool::BlockPool(int num_blocks, int block_size)
    : block_size_(block_size),
      blocks_(num_blocks),
      tokens_(static_cast<size_t>(num_blocks) * block_size) {
  TM_CHECK(num_blocks > 0 && block_size > 0, "num_blocks ", num_blocks, " block_size ", block_size);
  // Descending, so block 0 is handed out first: plans and tests read naturally.
  free_list_.reserve(num_blocks);
  for (BlockId b = num_blocks - 1; b >= 0; --b) free_list_.push_back(b);
  cached_.reserve(num_blocks);
}

std::optional<BlockId> BlockPool::Allocate() {
  BlockId block;
  if (!free_list_.empty()) {
    block = free_list_.back();
    free_list_.pop_back();
  } else if (lru_head_ >= 0) {
    block = lru_head_;
    LruRemove(block);
    Unregister(block);
    ++num_evictions_;
  } else {
    return std::nullopt;
  }
  blocks_[block].ref_count = 1;
  return block;
}

void BlockPool::Ref(BlockId block) {
  Block& b = blocks_[block];
  if (b.ref_count == 0) {
    TM_CHECK(b.is_cached, "Ref of free block ", block, ": only cached blocks can be revived");
    LruRemove(block);
  }
  ++b.ref_count;
}

void BlockPool::Unref(BlockId block) {
  Block& b = blocks_[block];
  TM_CHECK(b.ref_count > 0, "block ", block, " released more often than referenced");
  if (--b.ref_count > 0) return;
  if (b.is_cached) {
    LruPushBack(block);
  } else {
    free_list_.push_back(block);
  }
}

std::optional<BlockId> BlockPool::Lookup(BlockHash hash, BlockHash parent,
                                         std::span<const int32_t> tokens) const {
  const auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  const BlockId block = it->second;
  if (blocks_[block].parent_hash != parent) return std::nullopt;
  const std::span<const int32_t> stored = TokensOf(block);
  if (!std::equal(stored.begin(), stored.end(), tokens.begin(), tokens.end())) {
    return std::nullopt;
  }
  return block;
}

bool BlockPool::Register(BlockId block, BlockHash hash, BlockHash parent,
                         std::span<const int32_t> tokens) {
  Block& b = blocks_[block];
  TM_CHECK(b.ref_count > 0 && !b.is_cached, "Register of block ", block, " ref_count ", b.ref_count,
           " is_cached ", b.is_cached);
  TM_CHECK(static_cast<int>(tokens.size()) == block_size_, "Register of a partial block");
  if (!cached_.try_emplace(hash, block).second) return false;
  b.is_cached = true;
  b.hash = hash;
  b.parent_hash = parent;
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<size_t>(block) * block_size_);
  return true;
}

int BlockPool::DropCachedFreeBlocks() {
  int dropped = 0;
  while (lru_head_ >= 0) {
    const BlockId block = lru_head_;
    LruRemove(block);
    Unregister(block);
    free_list_.push_back(block);
    ++dropped;
  }
  return dropped;
}

void BlockPool::LruPushBack(BlockId block) {
  Block& b = blocks_[block];
  b.lru_prev = lru_tail_;
  b.lru_next = -1;
  if (lru_tail_ >= 0) {
    blocks_[lru_tail_].lru_next = block;
  } else {
    lru_head_ = block;
  }
  lru_tail_ = block;
  ++num_lru_;
}

void BlockPool::LruRemove(BlockId block) {
  Block& b = blocks_[block];
  if (b.lru_prev >= 0) {
    blocks_[b.lru_prev].lru_next = b.lru_next;
  } else {
    lru_head_ = b.lru_next;
  }
  if (b.lru_next >= 0) {
    blocks_[b.lru_next].lru_prev = b.lru_prev;
  } else {
    lru_tail_ = b.lru_prev;
  }
  b.lru_prev = b.lru_next = -1;
  --num_lru_;
}

void BlockPool::Unregister(BlockId block) {
  Block& b = blocks_[block];
  cached_.erase(b.hash);
  b.is_cached = false;
  b.hash = b.parent_hash = 0;
}

std::span<const int32_t> BlockPool::TokensOf(BlockId block) const {
  return {tokens_.data() + static_cast<size_t>(block) * block_size_,
          static_cast<size_t>(block_size_)};
}

absl::Status BlockPool::CheckConsistency() const {
  const int n = num_blocks();
  // 0: not seen, 1: on the free list, 2: on the LRU list.
  std::vector<uint8_t> seen(n, 0);
  for (const BlockId block : free_list_) {
    if (block < 0 || block >= n)
      return absl::InternalError(absl::StrCat("free list holds bad id ", block));
    if (seen[block])
      return absl::InternalError(absl::StrCat("block ", block, " twice on the free list"));
    seen[block] = 1;
    const Block& b = blocks_[block];
    if (b.ref_count != 0 || b.is_cached) {
      return absl::InternalError(absl::StrCat("free block ", block, " has ref_count ", b.ref_count,
                                              " is_cached ", b.is_cached));
    }
  }
  int lru_count = 0;
  BlockId prev = -1;
  for (BlockId block = lru_head_; block >= 0; block = blocks_[block].lru_next) {
    if (seen[block]) return absl::InternalError(absl::StrCat("block ", block, " on two lists"));
    seen[block] = 2;
    const Block& b = blocks_[block];
    if (b.lru_prev != prev) return absl::InternalError(absl::StrCat("LRU back link of ", block));
    if (b.ref_count != 0 || !b.is_cached) {
      return absl::InternalError(absl::StrCat("cached-free block ", block, " has ref_count ",
                                              b.ref_count, " is_cached ", b.is_cached));
    }
    prev = block;
    if (++lru_count > n) return absl::InternalError("LRU list has a cycle");
  }
  if (prev != lru_tail_ || lru_count != num_lru_) {
    return absl::InternalError(
        absl::StrCat("LRU tail/size mismatch: counted ", lru_count, " recorded ", num_lru_));
  }
  int num_registered = 0;
  for (BlockId block = 0; block < n; ++block) {
    const Block& b = blocks_[block];
    if (!seen[block] && b.ref_count <= 0) {
      return absl::InternalError(
          absl::StrCat("block ", block, " is lost: ref_count ", b.ref_count, " and on no list"));
    }
    if (!b.is_cached) continue;
    ++num_registered;
    const auto it = cached_.find(b.hash);
    if (it == cached_.end() || it->second != block) {
      return absl::InternalError(absl::StrCat("cached block ", block, " missing from the index"));
    }
  }
  if (num_registered != static_cast<int>(cached_.size())) {
    return absl::InternalError(absl::StrCat("index holds ", cached_.size(), " hashes but ",
                                            num_registered, " blocks are registered"));
  }
  return absl::OkStatus();
}

}  // namespace tokenmill
