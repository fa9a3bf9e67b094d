// End to end on the CUDA backend: the Llama graph (src/model) with random demo weights
// (BuildDemoModel; default demo:llama3-8b, or $TOKENMILL_E2E_PRESET).
//   BM_DecodeBatch1     one sequence, 1024-token prompt, then decode; tokens/s and the
//                       fraction of the HBM roofline (bytes that must stream per token:
//                       every layer's weights, the LM head and the KV cache read, over
//                       the measured copy bandwidth).
//   BM_OfflineThroughput  N sequences (256, or as many as fit at 0.9 utilization) of
//                       1024 prompt + $TOKENMILL_E2E_OUTPUT (default 1024) generated
//                       tokens: chunked prefill at 8192 tokens per step, then lock-step
//                       decode; total and output tokens/s. Generated ids are fixed
//                       pseudo-random tokens (random weights make argmax meaningless),
//                       but the logits are still computed and copied out every step.
// The model is built once per process (16 GB for llama3-8b: needs the host RAM).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cuda_bench_util.h"
#include "tokenmill/backend/cuda_backend.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/llama_model.h"

namespace tokenmill::bench {
namespace {

constexpr int kBlockSize = 16;
constexpr int kPrefillBudget = 8192;

std::string Preset() {
  const char* p = std::getenv("TOKENMILL_E2E_PRESET");
  return p != nullptr ? p : "demo:llama3-8b";
}

int OutputTokens() {
  const char* p = std::getenv("TOKENMILL_E2E_OUTPUT");
  return p != nullptr ? std::max(2, std::atoi(p)) : 1024;
}

struct Engine {
  std::unique_ptr<LoadedModel> weights;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::string error;
};

// One model and backend per process; the KV cache is re-sized by each benchmark.
Engine& GetEngine() {
  static Engine* engine = [] {
    auto* e = new Engine;
    if (CudaDeviceCount() == 0) {  // before building gigabytes of weights
      e->error = "needs a CUDA GPU: " + CudaDeviceDescription(0);
      return e;
    }
    auto w = BuildDemoModel(Preset());
    if (!w.ok()) {
      e->error = std::string(w.status().message());
      return e;
    }
    e->weights = std::move(w).value();
    auto b = MakeCudaBackend({});
    if (!b.ok()) {
      e->error = std::string(b.status().message());
      return e;
    }
    e->backend = std::move(b).value();
    LlamaModelOptions opts;
    opts.max_num_tokens = kPrefillBudget;
    opts.max_num_logits = 256;
    auto m = LlamaModel::Create(*e->weights, e->backend.get(), opts);
    if (!m.ok()) {
      e->error = std::string(m.status().message());
      return e;
    }
    e->model = std::move(m).value();
    return e;
  }();
  return *engine;
}

bool Ready(benchmark::State& state, Engine& e) {
  if (!RequireGpu(state)) return false;
  if (!e.error.empty()) state.SkipWithError(e.error.c_str());
  return e.error.empty();
}

// Bytes one decode step must stream at least: all matrices but the embedding table.
double StreamedWeightBytes(const ModelConfig& c) {
  const double per_layer = static_cast<double>(c.hidden_size) * c.num_heads * c.head_dim * 2 +
                           2.0 * c.hidden_size * c.num_kv_heads * c.head_dim +
                           3.0 * c.hidden_size * c.intermediate_size;
  return 2.0 * (per_layer * c.num_layers + static_cast<double>(c.vocab_size) * c.hidden_size);
}

double KvBytesPerToken(const ModelConfig& c) {
  return 2.0 * c.num_layers * 2 * c.num_kv_heads * c.head_dim;  // BF16 K and V
}

// Sequence s owns blocks [s * per_seq, (s + 1) * per_seq).
BatchSequence Sequence(int s, int per_seq, int query_start, int num_query, int context) {
  BatchSequence seq;
  seq.query_start = query_start;
  seq.num_query_tokens = num_query;
  seq.context_len = context;
  for (int b = 0; b * kBlockSize < context; ++b) seq.block_table.push_back(s * per_seq + b);
  return seq;
}

void AddTokens(BatchPlan* plan, int first_pos, int count, int seed, int vocab) {
  for (int j = 0; j < count; ++j) {
    plan->token_ids.push_back(static_cast<int32_t>((int64_t{seed} * 7919 + j * 104729) % vocab));
    plan->positions.push_back(first_pos + j);
  }
}

void BM_DecodeBatch1(benchmark::State& state) {
  Engine& e = GetEngine();
  if (!Ready(state, e)) return;
  const int prompt = 1024, decode = 128, timed = 100;
  const int per_seq = (prompt + decode) / kBlockSize + 1;
  if (!e.backend->AllocateKvCache(e.model->KvSpec(per_seq, kBlockSize)).ok()) {
    state.SkipWithError("KV cache allocation failed");
    return;
  }
  std::vector<float> logits;
  double seconds = 0;
  for (auto _ : state) {
    BatchPlan plan;
    AddTokens(&plan, 0, prompt, 1, e.model->config().vocab_size);
    plan.sequences.push_back(Sequence(0, per_seq, 0, prompt, prompt));
    plan.logits_rows = {prompt - 1};
    if (!e.model->Forward(plan, &logits).ok()) return state.SkipWithError("prefill failed");
    std::chrono::steady_clock::time_point t0;
    for (int i = 0; i < decode; ++i) {
      if (i == decode - timed) t0 = std::chrono::steady_clock::now();
      const auto next = std::max_element(logits.begin(), logits.end()) - logits.begin();
      BatchPlan step;
      step.token_ids = {static_cast<int32_t>(next)};
      step.positions = {prompt + i};
      step.sequences.push_back(Sequence(0, per_seq, 0, 1, prompt + i + 1));
      step.logits_rows = {0};
      if (!e.model->Forward(step, &logits).ok()) return state.SkipWithError("decode failed");
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(seconds / timed);
  }
  const ModelConfig& c = e.model->config();
  const double bytes = StreamedWeightBytes(c) + KvBytesPerToken(c) * (prompt + decode / 2);
  state.counters["tokens/s"] = timed / seconds;
  state.counters["roofline_tokens/s"] = CopyBandwidth() / bytes;
  state.counters["of_roofline"] = (bytes / CopyBandwidth()) / (seconds / timed);
}
BENCHMARK(BM_DecodeBatch1)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_OfflineThroughput(benchmark::State& state) {
  Engine& e = GetEngine();
  if (!Ready(state, e)) return;
  const int in = 1024, out = OutputTokens();
  const int per_seq = (in + out + kBlockSize - 1) / kBlockSize;
  const KvCacheSpec geometry = e.model->KvSpec(0, kBlockSize);
  auto blocks = CudaNumKvBlocks(*e.backend, geometry, 0.9);
  if (!blocks.ok()) return state.SkipWithError(std::string(blocks.status().message()).c_str());
  const int num_seqs = std::min(256, *blocks / per_seq);
  if (num_seqs < 1 || !e.backend->AllocateKvCache(e.model->KvSpec(num_seqs * per_seq, kBlockSize)).ok()) {
    return state.SkipWithError("no room for one sequence's KV cache");
  }
  std::vector<float> logits;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int first = 0; first < num_seqs;) {  // chunked prefill, whole prompts per step
      BatchPlan plan;
      for (; first < num_seqs && plan.num_tokens() + in <= kPrefillBudget; ++first) {
        plan.sequences.push_back(Sequence(first, per_seq, plan.num_tokens(), in, in));
        AddTokens(&plan, 0, in, first, e.model->config().vocab_size);
        plan.logits_rows.push_back(plan.num_tokens() - 1);
      }
      if (!e.model->Forward(plan, &logits).ok()) return state.SkipWithError("prefill failed");
    }
    for (int i = 0; i + 1 < out; ++i) {
      for (int first = 0; first < num_seqs; first += 256) {
        BatchPlan step;
        for (int s = first; s < std::min(num_seqs, first + 256); ++s) {
          step.sequences.push_back(Sequence(s, per_seq, step.num_tokens(), 1, in + i + 1));
          AddTokens(&step, in + i, 1, s + i, e.model->config().vocab_size);
          step.logits_rows.push_back(step.num_tokens() - 1);
        }
        if (!e.model->Forward(step, &logits).ok()) return state.SkipWithError("decode failed");
      }
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(seconds);
  }
  state.counters["sequences"] = num_seqs;
  state.counters["output_len"] = out;
  state.counters["total_tokens/s"] = static_cast<double>(num_seqs) * (in + out) / seconds;
  state.counters["output_tokens/s"] = static_cast<double>(num_seqs) * out / seconds;
}
BENCHMARK(BM_OfflineThroughput)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

}  // namespace
}  // namespace tokenmill::bench

BENCHMARK_MAIN();
