// Tensor parallelism on GPUs: the same decode batch through the engine's ModelExecutor at
// tp = 1 (one GPU) and tp = 2 (two GPUs, NCCL collectives on each backend's stream, decode
// steps replayed from CUDA graphs), and the speedup. Random demo weights (default
// demo:llama3-8b, or $TOKENMILL_TP_PRESET), built once per process.
//   BM_TensorParallelDecode/tp:N/batch:B  B sequences of 512-token prompts (one prefill
//       step each), then 64 timed decode steps; tokens/s and, at tp 2, speedup (of tp 1
//       measured in the same process). Skipped with fewer than N GPUs.
// scripts/gpu-check.sh runs it on machines with two GPUs or more.
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda_bench_util.h"
#include "tokenmill/backend/cuda_backend.h"
#include "tokenmill/engine/model_executor.h"
#include "tokenmill/model/demo_model.h"

namespace tokenmill::bench {
namespace {

constexpr int kBlockSize = 16;
constexpr int kPrompt = 512;
constexpr int kWarmupSteps = 8;  // graph warm-up and capture
constexpr int kTimedSteps = 64;

const LoadedModel* Model(std::string* error) {
  static std::unique_ptr<LoadedModel> model;
  static std::string why;
  static bool built = false;
  if (!built) {
    built = true;
    const char* p = std::getenv("TOKENMILL_TP_PRESET");
    auto m = BuildDemoModel(p != nullptr ? p : "demo:llama3-8b");
    if (m.ok()) {
      model = std::move(m).value();
    } else {
      why = std::string(m.status().message());
    }
  }
  *error = why;
  return model.get();
}

// tokens/s of the tp = 1 run, for the speedup of later runs.
std::map<int, double>& OneGpuTokensPerSecond() {
  static std::map<int, double> by_batch;
  return by_batch;
}

// `num_new` tokens for each of sequences [first, first + count); sequence s owns blocks
// [s * per_seq, (s + 1) * per_seq) and holds len[s] tokens so far.
BatchPlan Step(int first, int count, int per_seq, const std::vector<int>& len, int num_new,
               int vocab) {
  BatchPlan plan;
  for (int s = first; s < first + count; ++s) {
    BatchSequence seq;
    seq.query_start = plan.num_tokens();
    seq.num_query_tokens = num_new;
    seq.context_len = len[s] + num_new;
    for (int b = 0; b * kBlockSize < seq.context_len; ++b) {
      seq.block_table.push_back(s * per_seq + b);
    }
    for (int j = 0; j < num_new; ++j) {
      plan.token_ids.push_back(static_cast<int32_t>((s * 7919 + (len[s] + j) * 104729) % vocab));
      plan.positions.push_back(len[s] + j);
    }
    plan.logits_rows.push_back(seq.query_start + num_new - 1);
    plan.sequences.push_back(std::move(seq));
  }
  return plan;
}

void BM_TensorParallelDecode(benchmark::State& state) {
  const int tp = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1));
  if (!RequireGpu(state)) return;
  if (CudaDeviceCount() < tp) {
    state.SkipWithError(("needs " + std::to_string(tp) + " GPUs").c_str());
    return;
  }
  std::string error;
  const LoadedModel* model = Model(&error);
  if (model == nullptr) return state.SkipWithError(error.c_str());
  const int per_seq = (kPrompt + kWarmupSteps + kTimedSteps) / kBlockSize + 1;
  ExecutorOptions eo;
  eo.backend = "cuda";
  eo.tensor_parallel = tp;
  eo.num_kv_blocks = batch * per_seq;
  eo.max_num_tokens = kPrompt;
  eo.max_num_logits = batch;
  auto exec = MakeModelExecutor(*model, eo);
  if (!exec.ok()) return state.SkipWithError(std::string(exec.status().message()).c_str());
  const int vocab = model->config.vocab_size;
  std::vector<int> len(batch, 0);
  std::vector<float> logits;
  double seconds = 0;
  for (auto _ : state) {
    for (int s = 0; s < batch; ++s) {  // one prefill step per sequence
      if (!(*exec)->Execute(Step(s, 1, per_seq, len, kPrompt, vocab), {}, &logits).ok()) {
        return state.SkipWithError("prefill failed");
      }
      len[s] = kPrompt;
    }
    std::chrono::steady_clock::time_point t0;
    for (int i = 0; i < kWarmupSteps + kTimedSteps; ++i) {
      if (i == kWarmupSteps) t0 = std::chrono::steady_clock::now();
      if (!(*exec)->Execute(Step(0, batch, per_seq, len, 1, vocab), {}, &logits).ok()) {
        return state.SkipWithError("decode failed");
      }
      for (int& l : len) ++l;
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(seconds / kTimedSteps);
  }
  const double tokens_per_s = static_cast<double>(batch) * kTimedSteps / seconds;
  state.counters["tokens/s"] = tokens_per_s;
  if (tp == 1) OneGpuTokensPerSecond()[batch] = tokens_per_s;
  if (tp > 1 && OneGpuTokensPerSecond().count(batch) > 0) {
    state.counters["speedup"] = tokens_per_s / OneGpuTokensPerSecond()[batch];
  }
  state.SetLabel((*exec)->Describe());
}
// tp 1 first: the speedup of tp 2 is against it.
BENCHMARK(BM_TensorParallelDecode)
    ->ArgNames({"tp", "batch"})
    ->ArgsProduct({{1, 2}, {1, 32}})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokenmill::bench

BENCHMARK_MAIN();
