// Time per Sample() call on one row of logits at real vocabulary sizes (Llama 2: 32000,
// Llama 3: 128256), for each stage of the pipeline. Logits are normal with a standard
// deviation of 2 ("flat": a nucleus of thousands of tokens) or 5 ("peaked": tens of tokens).
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "tokenmill/sampling/sampler.h"

namespace tokenmill {
namespace {

std::vector<float> Logits(int vocab, float stddev) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = d(rng);
  return logits;
}

enum Config { kGreedy, kTemperature, kTopK50, kTopP09, kTopKTopP, kMinP, kPenalties, kLogprobs };

SamplingParams ParamsFor(int config) {
  SamplingParams p;
  p.seed = 1;
  p.temperature = 0.8f;
  switch (config) {
    case kGreedy:
      p.temperature = 0.0f;
      break;
    case kTemperature:
      break;
    case kTopK50:
      p.top_k = 50;
      break;
    case kTopP09:
      p.top_p = 0.9f;
      break;
    case kTopKTopP:
      p.top_k = 50;
      p.top_p = 0.9f;
      break;
    case kMinP:
      p.min_p = 0.05f;
      break;
    case kPenalties:
      p.repetition_penalty = 1.1f;
      p.frequency_penalty = 0.5f;
      p.presence_penalty = 0.5f;
      break;
    case kLogprobs:
      p.logprobs = 5;
      break;
  }
  return p;
}

void BM_Sample(benchmark::State& state) {
  const int vocab = static_cast<int>(state.range(0));
  const int config = static_cast<int>(state.range(1));
  const std::vector<float> logits = Logits(vocab, state.range(2) / 10.0f);
  std::vector<int32_t> prompt(2000);
  std::mt19937 rng(2);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % vocab);
  Sampler sampler = *Sampler::Create(ParamsFor(config), prompt);
  for (int i = 0; i < 500; ++i) sampler.Accept(static_cast<int32_t>(rng() % vocab));
  for (auto _ : state) {
    benchmark::DoNotOptimize(sampler.Sample(logits).token_id);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * vocab * static_cast<int64_t>(sizeof(float)));
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"vocab", "config", "stddev_x10"});
  for (int vocab : {32000, 128256}) {
    for (int config = kGreedy; config <= kLogprobs; ++config) {
      for (int stddev : {20, 50}) b->Args({vocab, config, stddev});
    }
  }
}

BENCHMARK(BM_Sample)->Apply(Args)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokenmill

BENCHMARK_MAIN();
