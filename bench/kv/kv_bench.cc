// KvCacheManager costs: a sequence's whole life (admit a prompt, decode, free), a decode
// append alone, a prefix lookup over a cached prompt, and fork + copy-on-write.
#include <numeric>
#include <vector>

#include "benchmark/benchmark.h"
#include "tokenmill/kv/kv_cache_manager.h"

namespace tokenmill {
namespace {

constexpr int kBlockSize = 16;

std::vector<int32_t> Tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Admit a 512-token prompt (distinct, no hit), decode 256 tokens, free. Per sequence.
void BM_SequenceLifecycle(benchmark::State& state) {
  KvCacheManager kv(KvCacheConfig{.num_blocks = 4096, .block_size = kBlockSize});
  std::vector<BlockCopy> copies;
  SeqId id = 0;
  std::vector<int32_t> tokens;
  for (auto _ : state) {
    tokens = Tokens(512, static_cast<int32_t>(id * 1000));
    const PrefixMatch m = kv.MatchPrefix(tokens, 0);
    if (!kv.AddSequence(id, m, 512)) std::abort();
    kv.MarkComputed(id, tokens, 512);
    for (int i = 0; i < 256; ++i) {
      tokens.push_back(i);
      if (!kv.Allocate(id, 1, &copies)) std::abort();
      kv.MarkComputed(id, tokens, static_cast<int>(tokens.size()));
    }
    kv.Free(id++);
  }
  state.SetItemsProcessed(state.iterations() * (512 + 256));  // tokens
}

// One decode append (Allocate 1 + MarkComputed) for each of 256 sequences.
void BM_DecodeAppend(benchmark::State& state) {
  constexpr int kSeqs = 256;
  KvCacheManager kv(KvCacheConfig{.num_blocks = 1 << 16, .block_size = kBlockSize});
  std::vector<std::vector<int32_t>> tokens(kSeqs);
  std::vector<BlockCopy> copies;
  int steps = 0;
  const auto reset = [&] {
    for (SeqId s = 0; s < kSeqs; ++s) {
      if (kv.Contains(s)) kv.Free(s);
      tokens[s] = Tokens(100, static_cast<int32_t>(s * 1000));
      if (!kv.AddSequence(s, kv.MatchPrefix(tokens[s], 0), 100)) std::abort();
      kv.MarkComputed(s, tokens[s], 100);
    }
  };
  reset();
  for (auto _ : state) {
    if (++steps == 2048) {
      state.PauseTiming();
      reset();
      steps = 0;
      state.ResumeTiming();
    }
    for (SeqId s = 0; s < kSeqs; ++s) {
      tokens[s].push_back(7);
      if (!kv.Allocate(s, 1, &copies)) std::abort();
      kv.MarkComputed(s, tokens[s], static_cast<int>(tokens[s].size()));
    }
  }
  state.SetItemsProcessed(state.iterations() * kSeqs);
}

// MatchPrefix of a prompt whose first range(0) tokens are cached (hashing + verification).
void BM_PrefixLookup(benchmark::State& state) {
  const int cached = static_cast<int>(state.range(0));
  KvCacheManager kv(KvCacheConfig{.num_blocks = 1024, .block_size = kBlockSize});
  const std::vector<int32_t> prefix = Tokens(cached, 1);
  if (!kv.AddSequence(0, kv.MatchPrefix(prefix, 0), cached)) std::abort();
  kv.MarkComputed(0, prefix, cached);
  kv.Free(0);
  std::vector<int32_t> prompt = prefix;
  prompt.push_back(-1);
  for (auto _ : state) {
    const PrefixMatch m = kv.MatchPrefix(prompt, 0);
    benchmark::DoNotOptimize(m.num_cached_tokens);
  }
  state.SetItemsProcessed(state.iterations() * cached);  // tokens looked up
}

// Fork a 1000-token sequence and append one token to both (one copy-on-write), free both.
void BM_ForkCopyOnWrite(benchmark::State& state) {
  KvCacheManager kv(KvCacheConfig{.num_blocks = 1024, .block_size = kBlockSize});
  std::vector<int32_t> tokens = Tokens(1000, 1);
  if (!kv.AddSequence(0, kv.MatchPrefix(tokens, 0), 1000)) std::abort();
  kv.MarkComputed(0, tokens, 1000);
  std::vector<BlockCopy> copies;
  for (auto _ : state) {
    kv.Fork(0, 1);
    if (!kv.Allocate(1, 1, &copies) || !kv.Allocate(0, 1, &copies)) std::abort();
    kv.ReleaseCopySources();
    kv.Free(1);
    copies.clear();
  }
}

BENCHMARK(BM_SequenceLifecycle)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeAppend)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PrefixLookup)->Arg(512)->Arg(8192);
BENCHMARK(BM_ForkCopyOnWrite);

}  // namespace
}  // namespace tokenmill

BENCHMARK_MAIN();
