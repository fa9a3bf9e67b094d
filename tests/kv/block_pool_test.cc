#include "tokenmill/kv/block_pool.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

std::vector<int32_t> Tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(BlockPoolTest, HandsOutBlocksInIdOrder) {
  BlockPool pool(4, 2);
  EXPECT_EQ(pool.Allocate(), 0);
  EXPECT_EQ(pool.Allocate(), 1);
  EXPECT_EQ(pool.num_used_blocks(), 2);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolTest, FreedBlocksAreReusedFirst) {
  BlockPool pool(4, 2);
  pool.Allocate();
  pool.Allocate();
  pool.Allocate();
  pool.Unref(1);
  EXPECT_EQ(pool.Allocate(), 1);
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolTest, ReturnsNulloptWhenEveryBlockIsReferenced) {
  BlockPool pool(2, 2);
  pool.Allocate();
  pool.Allocate();
  EXPECT_EQ(pool.Allocate(), std::nullopt);
  EXPECT_EQ(pool.num_available_blocks(), 0);
}

TEST(BlockPoolTest, CachedFreeBlocksAreEvictedOnlyWhenNoFreeBlockIsLeft) {
  BlockPool pool(3, 2);
  const BlockId a = *pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 11, 0, Tokens(2, 0)));
  pool.Unref(a);
  EXPECT_EQ(pool.num_cached_free_blocks(), 1);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  EXPECT_EQ(pool.Allocate(), 1);
  EXPECT_EQ(pool.Allocate(), 2);
  EXPECT_EQ(pool.num_evictions(), 0);
  EXPECT_TRUE(pool.is_cached(a));
  EXPECT_EQ(pool.Allocate(), a);  // now the cached block goes
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_FALSE(pool.is_cached(a));
  EXPECT_EQ(pool.Lookup(11, 0, Tokens(2, 0)), std::nullopt);
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolTest, EvictsLeastRecentlyReleasedFirst) {
  BlockPool pool(3, 1);
  for (int i = 0; i < 3; ++i) {
    const BlockId b = *pool.Allocate();
    ASSERT_TRUE(pool.Register(b, 100 + i, 0, Tokens(1, i)));
  }
  pool.Unref(1);
  pool.Unref(0);
  pool.Unref(2);
  // Reviving 1 and releasing it again makes it the most recent.
  pool.Ref(1);
  pool.Unref(1);
  EXPECT_EQ(pool.Allocate(), 0);
  EXPECT_EQ(pool.Allocate(), 2);
  EXPECT_EQ(pool.Allocate(), 1);
  EXPECT_EQ(pool.num_evictions(), 3);
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolTest, RefOfCachedFreeBlockTakesItOffTheEvictableList) {
  BlockPool pool(2, 2);
  const BlockId a = *pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 7, 0, Tokens(2, 5)));
  pool.Unref(a);
  EXPECT_EQ(pool.Lookup(7, 0, Tokens(2, 5)), a);
  pool.Ref(a);
  EXPECT_EQ(pool.num_cached_free_blocks(), 0);
  EXPECT_EQ(pool.num_available_blocks(), 1);
  EXPECT_EQ(pool.ref_count(a), 1);
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolTest, LookupComparesParentAndTokensNotOnlyTheHash) {
  BlockPool pool(2, 2);
  const BlockId a = *pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 42, 1, Tokens(2, 0)));
  EXPECT_EQ(pool.Lookup(42, 1, Tokens(2, 0)), a);
  EXPECT_EQ(pool.Lookup(42, 2, Tokens(2, 0)), std::nullopt);  // other parent
  EXPECT_EQ(pool.Lookup(42, 1, Tokens(2, 9)), std::nullopt);  // other tokens
  EXPECT_EQ(pool.Lookup(43, 1, Tokens(2, 0)), std::nullopt);
}

TEST(BlockPoolTest, SecondRegistrationOfAHashIsRefused) {
  BlockPool pool(2, 2);
  const BlockId a = *pool.Allocate();
  const BlockId b = *pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 42, 0, Tokens(2, 0)));
  EXPECT_FALSE(pool.Register(b, 42, 0, Tokens(2, 0)));
  EXPECT_FALSE(pool.is_cached(b));
  pool.Unref(b);
  EXPECT_EQ(pool.num_free_blocks(), 1);  // the duplicate is plain free, not cached
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolTest, SharedBlockStaysReferencedUntilLastRelease) {
  BlockPool pool(2, 2);
  const BlockId a = *pool.Allocate();
  pool.Ref(a);
  pool.Unref(a);
  EXPECT_EQ(pool.ref_count(a), 1);
  EXPECT_EQ(pool.num_used_blocks(), 1);
  pool.Unref(a);
  EXPECT_EQ(pool.num_used_blocks(), 0);
}

TEST(BlockPoolTest, DropCachedFreeBlocksKeepsReferencedRegistrations) {
  BlockPool pool(3, 1);
  const BlockId a = *pool.Allocate();
  const BlockId b = *pool.Allocate();
  ASSERT_TRUE(pool.Register(a, 1, 0, Tokens(1, 0)));
  ASSERT_TRUE(pool.Register(b, 2, 0, Tokens(1, 1)));
  pool.Unref(a);
  EXPECT_EQ(pool.DropCachedFreeBlocks(), 1);
  EXPECT_FALSE(pool.is_cached(a));
  EXPECT_TRUE(pool.is_cached(b));
  EXPECT_EQ(pool.num_free_blocks(), 2);
  EXPECT_TRUE(pool.CheckConsistency().ok());
}

TEST(BlockPoolDeathTest, ReleasingAnUnreferencedBlockAborts) {
  BlockPool pool(2, 2);
  const BlockId a = *pool.Allocate();
  pool.Unref(a);
  EXPECT_DEATH(pool.Unref(a), "released more often than referenced");
}

}  // namespace
}  // namespace tokenmill
