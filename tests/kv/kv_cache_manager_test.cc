#include "tokenmill/kv/kv_cache_manager.h"

#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<int32_t> Tokens(int n, int32_t first = 1000) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

#define EXPECT_INVARIANTS(kv)                      \
  do {                                             \
    const absl::Status s = (kv).CheckInvariants(); \
    EXPECT_TRUE(s.ok()) << s;                      \
  } while (0)

KvCacheManager Make(int num_blocks, int block_size = 4, bool prefix_caching = true) {
  return KvCacheManager(KvCacheConfig{
      .num_blocks = num_blocks, .block_size = block_size, .enable_prefix_caching = prefix_caching});
}

// Admits `seq` with its whole token list computed in one step.
void AddComputed(KvCacheManager& kv, SeqId seq, const std::vector<int32_t>& tokens,
                 uint64_t key = 0) {
  const PrefixMatch m = kv.MatchPrefix(tokens, key);
  ASSERT_TRUE(kv.AddSequence(seq, m, static_cast<int>(tokens.size()) - m.num_cached_tokens));
  kv.MarkComputed(seq, tokens, static_cast<int>(tokens.size()));
}

TEST(NumBlocksForBudgetTest, DividesTheBudgetByBlockBytes) {
  EXPECT_EQ(*NumBlocksForBudget(1 << 20, 1024, 16), 64);
  EXPECT_EQ(*NumBlocksForBudget((1 << 20) + 1000, 1024, 16), 64);  // rounds down
  EXPECT_FALSE(NumBlocksForBudget(1000, 1024, 16).ok());           // not one block
  EXPECT_FALSE(NumBlocksForBudget(1 << 20, 0, 16).ok());
  EXPECT_FALSE(NumBlocksForBudget(1 << 20, 1024, 0).ok());
}

TEST(KvCacheConfigTest, ValidateNamesTheField) {
  EXPECT_THAT(std::string((KvCacheConfig{.num_blocks = 0}).Validate().message()),
              ::testing::HasSubstr("kv.num_blocks"));
  EXPECT_THAT(std::string((KvCacheConfig{.num_blocks = 8, .block_size = 0}).Validate().message()),
              ::testing::HasSubstr("kv.block_size"));
  EXPECT_TRUE((KvCacheConfig{.num_blocks = 8}).Validate().ok());
}

TEST(KvCacheManagerTest, AllocatesBlocksAsTokensGrow) {
  KvCacheManager kv = Make(8);
  const std::vector<int32_t> t = Tokens(6);
  ASSERT_TRUE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 6));
  EXPECT_THAT(kv.block_table(1), ElementsAre(0, 1));
  kv.MarkComputed(1, t, 6);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(kv.Allocate(1, 2, &copies));  // 8 tokens: still two blocks
  EXPECT_THAT(kv.block_table(1), ElementsAre(0, 1));
  ASSERT_TRUE(kv.Allocate(1, 3, &copies));  // 9 tokens: a third block
  EXPECT_THAT(kv.block_table(1), ElementsAre(0, 1, 2));
  EXPECT_THAT(copies, IsEmpty());
  EXPECT_EQ(kv.stats().num_used_blocks, 3);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, AllocateFailsWithoutChangingAnything) {
  KvCacheManager kv = Make(2);
  const std::vector<int32_t> t = Tokens(4);
  ASSERT_TRUE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 4));
  kv.MarkComputed(1, t, 4);
  std::vector<BlockCopy> copies;
  EXPECT_EQ(kv.NumBlocksToAllocate(1, 5), 2);
  EXPECT_FALSE(kv.Allocate(1, 5, &copies));
  EXPECT_THAT(kv.block_table(1), ElementsAre(0));
  EXPECT_EQ(kv.num_available_blocks(), 1);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, SecondSequenceReusesTheCachedPrefix) {
  KvCacheManager kv = Make(16);
  std::vector<int32_t> a = Tokens(10);
  AddComputed(kv, 1, a);
  std::vector<int32_t> b = a;
  b[9] = 7;  // shares the two full blocks (8 tokens), differs inside the third
  b.push_back(8);
  const PrefixMatch m = kv.MatchPrefix(b, 0);
  EXPECT_EQ(m.num_cached_tokens, 8);
  EXPECT_THAT(m.blocks, ElementsAre(0, 1));
  ASSERT_TRUE(kv.AddSequence(2, m, 3));
  EXPECT_THAT(kv.block_table(2), ElementsAre(0, 1, 3));
  EXPECT_EQ(kv.num_computed_tokens(2), 8);
  const KvStats s = kv.stats();
  EXPECT_EQ(s.prefix_query_tokens, 10 + 11);
  EXPECT_EQ(s.prefix_hit_tokens, 8);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, PrefixMatchNeverCoversTheWholeSequence) {
  KvCacheManager kv = Make(16);
  const std::vector<int32_t> t = Tokens(8);  // exactly two blocks
  AddComputed(kv, 1, t);
  kv.Free(1);
  EXPECT_EQ(kv.MatchPrefix(t, 0).num_cached_tokens, 4);  // last token must be computed
  std::vector<int32_t> longer = t;
  longer.push_back(1);
  EXPECT_EQ(kv.MatchPrefix(longer, 0).num_cached_tokens, 8);
  EXPECT_EQ(kv.MatchPrefix(std::vector<int32_t>{}, 0).num_cached_tokens, 0);
}

TEST(KvCacheManagerTest, FreedSequencesLeaveCachedFreeBlocks) {
  KvCacheManager kv = Make(8);
  AddComputed(kv, 1, Tokens(10));
  kv.Free(1);
  const KvStats s = kv.stats();
  EXPECT_EQ(s.num_used_blocks, 0);
  EXPECT_EQ(s.num_cached_free_blocks, 2);  // the partial third block is not cached
  EXPECT_EQ(s.num_free_blocks, 6);
  EXPECT_INVARIANTS(kv);
  // A hit revives them.
  std::vector<int32_t> t = Tokens(10);
  const PrefixMatch m = kv.MatchPrefix(t, 0);
  EXPECT_EQ(m.num_cached_tokens, 8);
  EXPECT_EQ(kv.NumBlocksToAdd(m, 2), 3);  // one new block plus two taken off the LRU list
  ASSERT_TRUE(kv.AddSequence(2, m, 2));
  EXPECT_EQ(kv.stats().num_cached_free_blocks, 0);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, ExtraKeySeparatesCaches) {
  KvCacheManager kv = Make(16);
  const std::vector<int32_t> t = Tokens(9);
  AddComputed(kv, 1, t, /*key=*/5);
  EXPECT_EQ(kv.MatchPrefix(t, 5).num_cached_tokens, 8);
  EXPECT_EQ(kv.MatchPrefix(t, 0).num_cached_tokens, 0);
  EXPECT_EQ(kv.MatchPrefix(t, 6).num_cached_tokens, 0);
}

TEST(KvCacheManagerTest, DisabledPrefixCachingNeverHits) {
  KvCacheManager kv = Make(16, 4, /*prefix_caching=*/false);
  const std::vector<int32_t> t = Tokens(9);
  AddComputed(kv, 1, t);
  kv.Free(1);
  EXPECT_EQ(kv.MatchPrefix(t, 0).num_cached_tokens, 0);
  EXPECT_EQ(kv.stats().num_cached_blocks, 0);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, BlocksAreCachedOnlyOnceComputed) {
  KvCacheManager kv = Make(16);
  const std::vector<int32_t> t = Tokens(12);
  ASSERT_TRUE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 12));
  EXPECT_EQ(kv.stats().num_cached_blocks, 0);  // allocated, KV not written yet
  kv.MarkComputed(1, t, 5);                    // chunked prefill: first chunk
  EXPECT_EQ(kv.stats().num_cached_blocks, 1);
  kv.MarkComputed(1, t, 12);
  EXPECT_EQ(kv.stats().num_cached_blocks, 3);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, CachedFreeBlocksAreEvictedLeastRecentlyReleasedFirst) {
  KvCacheManager kv = Make(4, 2);
  AddComputed(kv, 1, Tokens(4, 0));    // blocks 0, 1
  AddComputed(kv, 2, Tokens(4, 100));  // blocks 2, 3
  kv.Free(2);
  kv.Free(1);
  // Release order: 3, 2 (seq 2, tail first), then 1, 0.
  const std::vector<int32_t> t = Tokens(2, 500);
  ASSERT_TRUE(kv.AddSequence(3, kv.MatchPrefix(t, 0), 2));
  EXPECT_THAT(kv.block_table(3), ElementsAre(3));
  EXPECT_EQ(kv.stats().num_evictions, 1);
  // Seq 2's head block survives: its first block still hits.
  EXPECT_EQ(kv.MatchPrefix(Tokens(4, 100), 0).num_cached_tokens, 2);
  EXPECT_EQ(kv.MatchPrefix(Tokens(5, 0), 0).num_cached_tokens, 4);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, ReserveBlocksHoldsBackAdmissions) {
  KvCacheManager kv = Make(4);
  const std::vector<int32_t> t = Tokens(12);
  EXPECT_FALSE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 12, /*reserve_blocks=*/2));
  EXPECT_FALSE(kv.Contains(1));
  EXPECT_TRUE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 12, /*reserve_blocks=*/1));
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, ForkSharesBlocksAndCopiesThePartialBlockOnWrite) {
  KvCacheManager kv = Make(8);
  const std::vector<int32_t> t = Tokens(6);
  AddComputed(kv, 1, t);  // blocks 0 (full), 1 (2 of 4 tokens)
  kv.Fork(1, 2);
  EXPECT_THAT(kv.block_table(2), ElementsAre(0, 1));
  EXPECT_EQ(kv.num_computed_tokens(2), 6);
  EXPECT_EQ(kv.stats().num_used_blocks, 2);
  EXPECT_INVARIANTS(kv);

  std::vector<BlockCopy> copies;
  EXPECT_EQ(kv.NumBlocksToAllocate(2, 1), 1);
  ASSERT_TRUE(kv.Allocate(2, 1, &copies));
  EXPECT_THAT(copies, ElementsAre(BlockCopy{1, 2}));
  EXPECT_THAT(kv.block_table(2), ElementsAre(0, 2));
  copies.clear();
  ASSERT_TRUE(kv.Allocate(1, 1, &copies));  // the parent now owns block 1 alone
  EXPECT_THAT(copies, IsEmpty());
  EXPECT_THAT(kv.block_table(1), ElementsAre(0, 1));
  EXPECT_EQ(kv.stats().num_cow_copies, 1);
  EXPECT_INVARIANTS(kv);
  kv.ReleaseCopySources();  // the step is planned
  kv.Free(1);
  kv.Free(2);
  EXPECT_EQ(kv.stats().num_used_blocks, 0);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, PendingCopySourceIsNotReusedBeforeTheStepIsPlanned) {
  KvCacheManager kv = Make(8);
  const std::vector<int32_t> t = Tokens(6);
  AddComputed(kv, 1, t);  // blocks 0, 1 (partial)
  kv.Fork(1, 2);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(kv.Allocate(2, 1, &copies));  // copy 1 -> 2
  kv.Free(1);                               // the source's last table lets go
  EXPECT_INVARIANTS(kv);
  EXPECT_EQ(kv.stats().num_used_blocks, 3);  // block 1 is held for the pending copy
  ASSERT_TRUE(kv.AddSequence(3, kv.MatchPrefix(Tokens(4, 50), 0), 4));
  EXPECT_THAT(kv.block_table(3), ElementsAre(3));  // not block 1
  kv.ReleaseCopySources();
  EXPECT_EQ(kv.stats().num_used_blocks, 3);  // blocks 0, 2 (seq 2) and 3 (seq 3)
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, ForkAtABlockBoundaryNeedsNoCopy) {
  KvCacheManager kv = Make(8);
  const std::vector<int32_t> t = Tokens(8);
  ASSERT_TRUE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 10));  // room reserved past 8
  kv.MarkComputed(1, t, 8);
  kv.Fork(1, 2);
  EXPECT_THAT(kv.block_table(2), ElementsAre(0, 1));  // not the reserved third block
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(kv.Allocate(2, 1, &copies));
  ASSERT_TRUE(kv.Allocate(1, 1, &copies));
  EXPECT_THAT(copies, IsEmpty());
  EXPECT_THAT(kv.block_table(1), ElementsAre(0, 1, 2));
  EXPECT_THAT(kv.block_table(2), ElementsAre(0, 1, 3));
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, ForkedSequencesHashTheirOwnContinuations) {
  KvCacheManager kv = Make(16);
  std::vector<int32_t> parent = Tokens(6);
  AddComputed(kv, 1, parent);
  kv.Fork(1, 2);
  std::vector<int32_t> child = parent;
  std::vector<BlockCopy> copies;
  parent.insert(parent.end(), {1, 2});
  child.insert(child.end(), {3, 4});
  ASSERT_TRUE(kv.Allocate(1, 2, &copies));
  ASSERT_TRUE(kv.Allocate(2, 2, &copies));
  kv.MarkComputed(1, parent, 8);
  kv.MarkComputed(2, child, 8);
  EXPECT_EQ(kv.stats().num_cached_blocks, 3);  // shared head + one tail each
  parent.push_back(0);
  child.push_back(0);
  EXPECT_EQ(kv.MatchPrefix(parent, 0).blocks,
            std::vector<BlockId>(kv.block_table(1).begin(), kv.block_table(1).end()));
  EXPECT_EQ(kv.MatchPrefix(child, 0).blocks,
            std::vector<BlockId>(kv.block_table(2).begin(), kv.block_table(2).end()));
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, IdenticalBlocksComputedTwiceAreCachedOnce) {
  KvCacheManager kv = Make(8);
  const std::vector<int32_t> t = Tokens(5);
  ASSERT_TRUE(kv.AddSequence(1, kv.MatchPrefix(t, 0), 5));
  ASSERT_TRUE(kv.AddSequence(2, kv.MatchPrefix(t, 0), 5));  // same step: no hit yet
  kv.MarkComputed(1, t, 5);
  kv.MarkComputed(2, t, 5);
  EXPECT_EQ(kv.stats().num_cached_blocks, 1);
  kv.Free(2);
  kv.Free(1);
  EXPECT_EQ(kv.stats().num_cached_free_blocks, 1);
  EXPECT_EQ(kv.stats().num_free_blocks, 7);
  EXPECT_INVARIANTS(kv);
}

TEST(KvCacheManagerTest, ResetPrefixCacheForgetsCachedFreeBlocks) {
  KvCacheManager kv = Make(8);
  AddComputed(kv, 1, Tokens(9));
  kv.Free(1);
  EXPECT_EQ(kv.ResetPrefixCache(), 2);
  EXPECT_EQ(kv.MatchPrefix(Tokens(9), 0).num_cached_tokens, 0);
  EXPECT_INVARIANTS(kv);
}

}  // namespace
}  // namespace tokenmill
