// End-to-end forward-pass throughput on the CPU backend: batch-1 decode tokens/s (a
// weight-streaming problem: each token reads every weight once) and prefill tokens/s
// (a GEMM problem), for real and synthetic Llama-shaped models in every weight dtype.
// Decode is reported against the machine's measured read bandwidth: the roofline is
// bandwidth / weight bytes per token.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "backend/ceilings.h"
#include "model/testing/model_writers.h"
#include "tokenmill/backend/cpu_backend.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/inspect.h"
#include "tokenmill/model/llama_model.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

namespace fs = std::filesystem;

// A Llama-2-like shape small enough to build in seconds, big enough (0.3 B parameters)
// that its weights do not fit in any cache, so decode measures memory, not cache.
std::string SyntheticModelPath(const std::string& dtype) {
  const fs::path dir = fs::temp_directory_path() / "tokenmill-bench";
  fs::create_directories(dir);
  const fs::path path = dir / ("llama-0.3b-" + dtype + ".gguf");
  if (!fs::exists(path)) {
    testing::TinyModelOptions o;
    o.vocab_size = 32000;
    o.hidden_size = 2048;
    o.intermediate_size = 5632;
    o.num_layers = 4;
    o.num_heads = 16;
    o.num_kv_heads = 4;
    o.max_position_embeddings = 4096;
    o.dtype = dtype;
    o.init_std = 0.02f;
    const absl::Status s = testing::WriteGgufModel(testing::MakeTinyModel(o), path.string());
    if (!s.ok()) return "";
  }
  return path.string();
}

std::string TestdataModel(const std::string& rel) {
  const char* env = std::getenv("TOKENMILL_TESTDATA");
  fs::path p = env != nullptr ? fs::path(env) : fs::path(TOKENMILL_SOURCE_DIR) / ".." / "shared" / "testdata";
  p /= rel;
  return fs::exists(p) ? p.string() : "";
}

struct Loaded {
  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> llama;
  uint64_t weight_bytes = 0;
};

std::unique_ptr<Loaded> Load(const std::string& spec, int max_tokens) {
  auto out = std::make_unique<Loaded>();
  auto m = IsDemoSpec(spec) ? BuildDemoModel(spec) : LoadModel(spec);
  if (!m.ok()) return nullptr;
  out->model = std::move(m).value();
  out->weight_bytes = SummarizeModel(*out->model).weight_bytes;
  out->backend = MakeCpuBackend({});
  LlamaModelOptions lo;
  lo.max_num_tokens = max_tokens;
  lo.max_num_logits = 1;
  auto l = LlamaModel::Create(*out->model, out->backend.get(), lo);
  if (!l.ok()) return nullptr;
  out->llama = std::move(l).value();
  const int blocks = (max_tokens + 64 + 15) / 16;
  if (!out->backend->AllocateKvCache(out->llama->KvSpec(blocks, 16)).ok()) return nullptr;
  return out;
}

BatchPlan Plan(int start, int num_tokens, int vocab) {
  BatchPlan plan;
  BatchSequence s;
  s.num_query_tokens = num_tokens;
  s.context_len = start + num_tokens;
  s.block_table.resize((s.context_len + 15) / 16);
  std::iota(s.block_table.begin(), s.block_table.end(), 0);
  for (int i = 0; i < num_tokens; ++i) {
    plan.token_ids.push_back((start + i) * 7919 % vocab);
    plan.positions.push_back(start + i);
  }
  plan.logits_rows.push_back(num_tokens - 1);
  plan.sequences.push_back(s);
  return plan;
}

std::string SpecFor(int which) {
  switch (which) {
    case 0: return TestdataModel("models/stories260K/stories260K.gguf");
    case 1: return "demo";
    case 2: return SyntheticModelPath("F32");
    case 3: return SyntheticModelPath("F16");
    case 4: return SyntheticModelPath("BF16");
    default: return SyntheticModelPath("Q8_0");
  }
}

const char* kNames[] = {"stories260K", "demo", "llama0.3b-F32", "llama0.3b-F16",
                        "llama0.3b-BF16", "llama0.3b-Q8_0"};

// Decode at context 64: one token per step, as batch-1 serving does.
void BM_Decode(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  state.SetLabel(kNames[which]);
  auto m = Load(SpecFor(which), 64);
  if (m == nullptr) {
    state.SkipWithError("model unavailable");
    return;
  }
  const int vocab = m->model->config.vocab_size;
  std::vector<float> logits;
  if (!m->llama->Forward(Plan(0, 63, vocab), &logits).ok()) {
    state.SkipWithError("prefill failed");
    return;
  }
  const BatchPlan step = Plan(63, 1, vocab);
  const double seconds = bench::TimedLoop(state, [&] {
    benchmark::DoNotOptimize(m->llama->Forward(step, &logits));
  }).wall;
  const double tokens_per_s = state.iterations() / seconds;
  const double bytes_per_s = tokens_per_s * static_cast<double>(m->weight_bytes);
  state.counters["tokens_per_s"] = tokens_per_s;
  state.counters["weight_GB_per_s"] = bytes_per_s / 1e9;
  state.counters["of_bandwidth"] = bytes_per_s / bench::ReadBandwidth();
  state.counters["weight_MB"] = static_cast<double>(m->weight_bytes) / 1e6;
}

// Prefill of a 256-token prompt in one step.
void BM_Prefill(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  state.SetLabel(kNames[which]);
  constexpr int kTokens = 256;
  auto m = Load(SpecFor(which), kTokens);
  if (m == nullptr) {
    state.SkipWithError("model unavailable");
    return;
  }
  const BatchPlan plan = Plan(0, kTokens, m->model->config.vocab_size);
  std::vector<float> logits;
  const double seconds = bench::TimedLoop(state, [&] {
    benchmark::DoNotOptimize(m->llama->Forward(plan, &logits));
  }).wall;
  const double tokens_per_s = state.iterations() * kTokens / seconds;
  const double flops = 2.0 * static_cast<double>(m->model->config.NumParameters()) * tokens_per_s;
  state.counters["tokens_per_s"] = tokens_per_s;
  state.counters["GFLOP_per_s"] = flops / 1e9;
  state.counters["of_fma_peak"] = bench::FmaPeak() > 0 ? flops / bench::FmaPeak() : 0;
}

BENCHMARK(BM_Decode)->DenseRange(0, 5)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Prefill)->DenseRange(0, 5)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace
}  // namespace tokenmill

BENCHMARK_MAIN();
