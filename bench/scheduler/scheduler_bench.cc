// Planning overhead per step: Schedule() plus OnStepDone() (the scheduler's bookkeeping:
// tokens, finish checks, prefix-cache registration) with no model at all, for N running
// decode sequences. The target: < 100 us per step at N = 256 on the dev machine.
// One benchmark iteration is one step: "Time" is the time per step.
//
//   DecodeStep/N           N sequences decoding; nothing arrives or finishes.
//   DecodeStepBatchPlan/N  the same plus what the engine does next with a null backend:
//                          flatten the plan into a BatchPlan (tokens, positions, tables).
//   SteadyState/N          N running; requests finish after 128 tokens and new ones
//                          (sharing a 64-token system prompt) take their place, so
//                          admissions, prefix lookups, chunked prefill and frees happen.
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/scheduler/scheduler.h"

namespace tokenmill {
namespace {

constexpr int kBlockSize = 16;
constexpr int kPromptTokens = 128;
constexpr int kStepsPerSetup = 512;  // decode steps before the state is rebuilt

struct World {
  World(int num_seqs, int max_tokens, int num_blocks)
      : kv(KvCacheConfig{.num_blocks = num_blocks, .block_size = kBlockSize}) {
    SchedulerConfig config;
    config.max_num_seqs = num_seqs;
    config.max_num_batched_tokens = std::max(2048, num_seqs);
    config.max_model_len = 1 << 16;
    scheduler = std::make_unique<Scheduler>(config, &kv, &clock);
    this->max_tokens = max_tokens;
  }

  void Add(RequestId id) {
    RequestSpec spec;
    spec.request_id = id;
    spec.prompt_token_ids.resize(kPromptTokens);
    for (int i = 0; i < kPromptTokens; ++i) {
      // A shared 64-token system prompt, then a per-request part.
      spec.prompt_token_ids[i] = i < 64 ? 1000 + i : static_cast<int32_t>(id * 7919 + i) % 30000;
    }
    spec.max_tokens = max_tokens;
    spec.stop_token_ids = {2};
    if (!scheduler->AddRequest(std::move(spec)).ok()) std::abort();
  }

  // One step with every sampled token = 7 (never a stop id).
  const StepPlan& Step() {
    const StepPlan& plan = scheduler->Schedule();
    int num_samples = 0;
    for (const ScheduledSequence& s : plan.sequences) num_samples += s.num_samples;
    sampled.assign(num_samples, 7);
    scheduler->OnStepDone(sampled);
    return plan;
  }

  FakeClock clock;
  KvCacheManager kv;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<int32_t> sampled;
  int max_tokens = 0;
};

// N sequences past their prefill, decoding.
std::unique_ptr<World> DecodingWorld(int num_seqs) {
  const int blocks_per_seq = (kPromptTokens + kStepsPerSetup + 8) / kBlockSize + 1;
  auto world = std::make_unique<World>(num_seqs, 1 << 20, num_seqs * blocks_per_seq + 64);
  for (int i = 0; i < num_seqs; ++i) world->Add(i + 1);
  while (world->kv.stats().prefix_query_tokens < int64_t{num_seqs} * kPromptTokens ||
         world->scheduler->stats().num_decode_tokens == 0) {
    world->Step();
  }
  return world;
}

void BuildBatchPlan(const StepPlan& plan, BatchPlan* batch) {
  batch->token_ids.clear();
  batch->positions.clear();
  batch->sequences.resize(plan.sequences.size());
  batch->logits_rows.clear();
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    const ScheduledSequence& s = plan.sequences[i];
    BatchSequence& b = batch->sequences[i];
    b.query_start = static_cast<int32_t>(batch->token_ids.size());
    b.num_query_tokens = s.num_new_tokens;
    b.context_len = s.context_len();
    b.block_table.assign(s.block_table.begin(), s.block_table.end());
    batch->token_ids.insert(batch->token_ids.end(), s.new_token_ids.begin(), s.new_token_ids.end());
    for (int32_t p = s.start_position; p < s.context_len(); ++p) batch->positions.push_back(p);
    if (s.needs_logits()) batch->logits_rows.push_back(b.query_start + s.num_new_tokens - 1);
  }
}

void RunDecode(benchmark::State& state, bool build_batch) {
  const int num_seqs = static_cast<int>(state.range(0));
  std::unique_ptr<World> world = DecodingWorld(num_seqs);
  BatchPlan batch;
  int steps = 0;
  for (auto _ : state) {
    if (++steps == kStepsPerSetup) {
      state.PauseTiming();
      world = DecodingWorld(num_seqs);
      steps = 0;
      state.ResumeTiming();
    }
    const StepPlan& plan = world->Step();
    if (build_batch) BuildBatchPlan(plan, &batch);
    benchmark::DoNotOptimize(plan.num_batched_tokens);
  }
  state.SetItemsProcessed(state.iterations() * num_seqs);  // sequence-steps
}

void BM_DecodeStep(benchmark::State& state) { RunDecode(state, false); }
void BM_DecodeStepBatchPlan(benchmark::State& state) { RunDecode(state, true); }

void BM_SteadyState(benchmark::State& state) {
  const int num_seqs = static_cast<int>(state.range(0));
  const int blocks_per_seq = (kPromptTokens + 128) / kBlockSize + 2;
  World world(num_seqs, /*max_tokens=*/128, num_seqs * blocks_per_seq + 64);
  RequestId next = 1;
  // Stagger: requests arrive over time so finishes spread across steps.
  for (int step = 0; step < 256; ++step) {
    while (world.scheduler->num_unfinished_requests() < (step + 1) * num_seqs / 128 &&
           world.scheduler->num_unfinished_requests() < num_seqs) {
      world.Add(next++);
    }
    world.Step();
  }
  for (auto _ : state) {
    while (world.scheduler->num_unfinished_requests() < num_seqs) world.Add(next++);
    benchmark::DoNotOptimize(world.Step().num_batched_tokens);
  }
  state.counters["preemptions"] = static_cast<double>(world.scheduler->stats().num_preemptions);
}

BENCHMARK(BM_DecodeStep)->Arg(256)->Arg(2048)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeStepBatchPlan)->Arg(256)->Arg(2048)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SteadyState)->Arg(256)->Arg(2048)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokenmill

BENCHMARK_MAIN();
