// CPU paged attention on Llama-3-8B head geometry (32 query heads, 8 KV heads, head_dim
// 128, blocks of 16 tokens in shuffled order). Decode is reported in GB/s of K/V read and
// as a fraction of the measured read bandwidth; prefill in GFLOP/s (QK^T and PV, causal).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "ceilings.h"
#include "tokenmill/backend/cpu_backend.h"

namespace tokenmill::bench {
namespace {

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockSize = 16;

struct AttentionFixture {
  std::unique_ptr<Backend> backend;
  BatchPlan plan;
  TensorView q, out;
  AttentionParams params{kHeads, kKvHeads, kHeadDim, 0.088388f, 0};

  // `batch` sequences, each with `context` tokens of which `new_tokens` are in this step.
  // threads <= 0: one per hardware thread.
  AttentionFixture(int batch, int context, int new_tokens, int threads = 0)
      : backend(MakeCpuBackend({.num_threads = threads})) {
    const int blocks_per_seq = (context + kBlockSize - 1) / kBlockSize;
    KvCacheSpec spec{1, batch * blocks_per_seq, kBlockSize, kKvHeads, kHeadDim, DType::kF32};
    if (!backend->AllocateKvCache(spec).ok()) return;
    std::vector<int32_t> ids(spec.num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
    // Fill the whole cache once (a prefill step per sequence) so K/V are real numbers.
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int s = 0; s < batch; ++s) {
      BatchPlan fill;
      fill.sequences.push_back({0, context, context,
                                std::vector<int32_t>(ids.begin() + s * blocks_per_seq,
                                                     ids.begin() + (s + 1) * blocks_per_seq)});
      for (int p = 0; p < context; ++p) {
        fill.token_ids.push_back(0);
        fill.positions.push_back(p);
      }
      std::vector<float> kv(static_cast<size_t>(context) * kKvHeads * kHeadDim);
      for (float& v : kv) v = dist(rng);
      if (!backend->PlanStep(fill).ok()) return;
      const TensorView t{kv.data(), DType::kF32, Shape{context, kKvHeads * kHeadDim}};
      backend->WriteKv(0, t, t);
      BatchSequence seq = fill.sequences[0];
      seq.query_start = plan.num_tokens();
      seq.num_query_tokens = new_tokens;
      for (int p = context - new_tokens; p < context; ++p) {
        plan.token_ids.push_back(0);
        plan.positions.push_back(p);
      }
      plan.sequences.push_back(std::move(seq));
    }
    if (!backend->PlanStep(plan).ok()) return;
    const Shape shape{plan.num_tokens(), kHeads * kHeadDim};
    std::vector<float> host(shape.NumElements());
    for (float& v : host) v = dist(rng);
    q = *backend->Allocate(DType::kF32, shape);
    out = *backend->Allocate(DType::kF32, shape);
    backend->CopyFromHost(host.data(), q);
  }
  void Run() { backend->Attention(0, q, params, out); }
};

// Args: batch, context, threads (0: all). With one thread the CPU column is the kernel's
// own time even on a busy machine.
void BM_AttentionDecode(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), context = static_cast<int>(state.range(1));
  AttentionFixture f(batch, context, 1, static_cast<int>(state.range(2)));
  ReadBandwidth();  // measured before timing starts
  const LoopSeconds secs = TimedLoop(state, [&] { f.Run(); });
  const double bytes =
      2.0 * batch * context * kKvHeads * kHeadDim * sizeof(float) * state.iterations();
  SetRate(state, "GB/s", bytes, secs, state.range(2) == 1, 1e-9);
  state.counters["of_bw"] = bytes / secs.wall / ReadBandwidth();
  if (!f.backend->Finish().ok()) state.SkipWithError("Attention failed");
}
BENCHMARK(BM_AttentionDecode)
    ->Args({1, 512, 0})
    ->Args({1, 2048, 0})
    ->Args({8, 2048, 0})
    ->Args({1, 8192, 0})
    ->Args({1, 8192, 1})
    ->ArgNames({"batch", "context", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Args: prefill chunk length (no cached context), threads (0: all).
void BM_AttentionPrefill(benchmark::State& state) {
  const int t = static_cast<int>(state.range(0));
  AttentionFixture f(1, t, t, static_cast<int>(state.range(1)));
  FmaPeak();  // measured before timing starts
  const LoopSeconds secs = TimedLoop(state, [&] { f.Run(); });
  // Causal: query i sees i + 1 keys; 2 FLOP per multiply-add in QK^T and in PV.
  const double pairs = 0.5 * t * (t + 1.0);
  const double flops = 4.0 * pairs * kHeads * kHeadDim * state.iterations();
  SetRate(state, "GFLOP/s", flops, secs, state.range(1) == 1, 1e-9);
  state.counters["of_peak"] = flops / secs.wall / FmaPeak();
  if (!f.backend->Finish().ok()) state.SkipWithError("Attention failed");
}
BENCHMARK(BM_AttentionPrefill)
    ->Args({512, 0})
    ->Args({2048, 0})
    ->Args({512, 1})
    ->ArgNames({"T", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokenmill::bench
