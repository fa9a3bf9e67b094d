// Randomized test of KvCacheManager against a shadow KV store: every token's "KV" is its
// token id written into the slot its block table names. After every operation the
// invariants hold and every sequence reads back exactly its own tokens, which catches a
// shared block written in place, a bad copy-on-write, or a wrong prefix hit.
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tokenmill/kv/kv_cache_manager.h"

namespace tokenmill {
namespace {

class ShadowKv {
 public:
  ShadowKv(int num_blocks, int block_size)
      : block_size_(block_size), slots_(static_cast<size_t>(num_blocks) * block_size, -1) {}

  void Copy(const std::vector<BlockCopy>& copies) {
    for (const BlockCopy& c : copies) {
      std::copy_n(slots_.begin() + c.src * block_size_, block_size_,
                  slots_.begin() + c.dst * block_size_);
    }
  }
  void Write(std::span<const BlockId> table, const std::vector<int32_t>& tokens, int begin,
             int end) {
    for (int pos = begin; pos < end; ++pos) Slot(table, pos) = tokens[pos];
  }
  bool Reads(std::span<const BlockId> table, const std::vector<int32_t>& tokens, int num_computed) {
    for (int pos = 0; pos < num_computed; ++pos) {
      if (Slot(table, pos) != tokens[pos]) return false;
    }
    return true;
  }

 private:
  int32_t& Slot(std::span<const BlockId> table, int pos) {
    return slots_[table[pos / block_size_] * block_size_ + pos % block_size_];
  }
  int block_size_;
  std::vector<int32_t> slots_;
};

struct Harness {
  Harness(int num_blocks, int block_size, uint32_t seed)
      : kv(KvCacheConfig{.num_blocks = num_blocks, .block_size = block_size}),
        shadow(num_blocks, block_size),
        rng(seed) {
    // A few shared "system prompts" make prefix hits frequent.
    for (int d = 0; d < 4; ++d) {
      std::vector<int32_t> doc(3 * block_size + d);
      for (int32_t& t : doc) t = static_cast<int32_t>(rng() % 50);
      docs.push_back(doc);
    }
  }

  int Rand(int n) { return static_cast<int>(rng() % n); }

  void Add() {
    std::vector<int32_t> tokens = docs[Rand(docs.size())];
    tokens.resize(Rand(tokens.size()) + 1);
    for (int i = Rand(12); i > 0; --i) tokens.push_back(Rand(50));
    const PrefixMatch m = kv.MatchPrefix(tokens, 0);
    const int chunk = 1 + Rand(static_cast<int>(tokens.size()) - m.num_cached_tokens);
    if (!kv.AddSequence(next_id, m, chunk)) return;
    seqs[next_id] = tokens;
    // KV of the hit blocks must already be what this sequence would have written.
    ASSERT_TRUE(shadow.Reads(kv.block_table(next_id), tokens, m.num_cached_tokens));
    Compute(next_id++, chunk);
  }

  void Compute(SeqId id, int n) {
    std::vector<int32_t>& tokens = seqs[id];
    const int begin = kv.num_computed_tokens(id);
    while (static_cast<int>(tokens.size()) < begin + n) tokens.push_back(Rand(50));
    std::vector<BlockCopy> copies;
    if (!kv.Allocate(id, n, &copies)) return;
    shadow.Copy(copies);
    shadow.Write(kv.block_table(id), tokens, begin, begin + n);
    kv.MarkComputed(id, tokens, begin + n);
  }

  void Step() {
    const int op = Rand(10);
    if (op < 3 || seqs.empty()) {
      Add();
    } else if (op < 7) {
      auto it = std::next(seqs.begin(), Rand(seqs.size()));
      Compute(it->first, 1 + Rand(6));
    } else if (op < 8) {
      auto it = std::next(seqs.begin(), Rand(seqs.size()));
      kv.Fork(it->first, next_id);
      seqs[next_id++] = it->second;
      seqs[next_id - 1].resize(kv.num_computed_tokens(it->first));
    } else {
      auto it = std::next(seqs.begin(), Rand(seqs.size()));
      kv.Free(it->first);
      seqs.erase(it);
    }
  }

  void Verify() {
    const absl::Status s = kv.CheckInvariants();
    ASSERT_TRUE(s.ok()) << s;
    for (const auto& [id, tokens] : seqs) {
      ASSERT_TRUE(shadow.Reads(kv.block_table(id), tokens, kv.num_computed_tokens(id)))
          << "sequence " << id << " reads foreign KV";
    }
  }

  KvCacheManager kv;
  ShadowKv shadow;
  std::mt19937 rng;
  std::vector<std::vector<int32_t>> docs;
  std::map<SeqId, std::vector<int32_t>> seqs;
  SeqId next_id = 0;
};

TEST(KvCacheRandomTest, InvariantsAndContentsHoldUnderRandomOperations) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE(seed);
    Harness h(/*num_blocks=*/24 + seed, /*block_size=*/1 + seed % 5, seed);
    for (int i = 0; i < 2000; ++i) {
      h.Step();
      // Some steps end planning, like Schedule() does; others let holds pile up.
      if (h.Rand(3) == 0) h.kv.ReleaseCopySources();
      ASSERT_NO_FATAL_FAILURE(h.Verify());
    }
    const KvStats before = h.kv.stats();
    EXPECT_GT(before.prefix_hit_tokens, 0);
    EXPECT_GT(before.num_evictions, 0);
    if (h.kv.block_size() > 1) {
      EXPECT_GT(before.num_cow_copies, 0);
    }
    for (const auto& [id, tokens] : h.seqs) h.kv.Free(id);
    h.seqs.clear();
    h.kv.ReleaseCopySources();
    const KvStats after = h.kv.stats();
    EXPECT_EQ(after.num_used_blocks, 0);
    EXPECT_EQ(after.num_free_blocks + after.num_cached_free_blocks, after.num_blocks);
    ASSERT_NO_FATAL_FAILURE(h.Verify());
  }
}

}  // namespace
}  // namespace tokenmill
