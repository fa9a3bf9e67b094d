// Fault injection (engine/fault_injection.h) and what the engine does with a failed step:
// exactly the requests in that step fail with INTERNAL, every other request completes with
// the tokens it would have produced anyway, no KV block leaks, no failed KV reaches the
// prefix cache, and the metrics count the failures as errors.
#include "tokenmill/engine/fault_injection.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"
#include "model/model_runner.h"
#include "testing/testdata.h"
#include "tokenmill/engine/engine.h"
#include "tokenmill/metrics/registry.h"
#include "tokenmill/metrics/serving_metrics.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

using ::testing::HasSubstr;

// --- the SPEC grammar --------------------------------------------------------------------

TEST(FaultSpecTest, ParsesEveryClauseAndPrintsACanonicalForm) {
  auto spec = ParseFaultSpec(" step_error:at=7,3,3 ; step_error:every=5;step_delay_ms=12 ");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->error_every, 5);
  EXPECT_EQ(spec->error_at_steps, (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(spec->delay_ms, 12);
  EXPECT_EQ(spec->ToString(), "step_error:every=5;step_error:at=3,7;step_delay_ms=12");
  auto again = ParseFaultSpec(spec->ToString());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ToString(), spec->ToString());
}

TEST(FaultSpecTest, FailsTheStepsItNames) {
  const FaultSpec every = *ParseFaultSpec("step_error:every=3");
  std::vector<int64_t> failed;
  for (int64_t step = 1; step <= 10; ++step) {
    if (every.FailsStep(step)) failed.push_back(step);
  }
  EXPECT_EQ(failed, (std::vector<int64_t>{3, 6, 9}));
  const FaultSpec at = *ParseFaultSpec("step_error:at=1,4");
  EXPECT_TRUE(at.FailsStep(1));
  EXPECT_FALSE(at.FailsStep(2));
  EXPECT_TRUE(at.FailsStep(4));
  EXPECT_FALSE(at.FailsStep(8));
  const FaultSpec delay = *ParseFaultSpec("step_delay_ms=1");
  EXPECT_FALSE(delay.FailsStep(1));
  EXPECT_FALSE(delay.is_empty());
}

TEST(FaultSpecTest, BadSpecsNameTheClauseAndTheProblem) {
  const std::map<std::string, std::string> cases = {
      {"", "no fault given"},
      {" ; ", "no fault given"},
      {"step_error:every=0", "clause 'step_error:every=0': every must be an integer >= 1"},
      {"step_error:every=+2", "every must be an integer >= 1"},
      {"step_error:every=2x", "every must be an integer >= 1"},
      {"step_error:every=2;step_error:every=3", "'every' is given twice"},
      {"step_error:at=", "at: '' is not a step number >= 1"},
      {"step_error:at=1,,2", "at: '' is not a step number >= 1"},
      {"step_error:at=0", "at: '0' is not a step number >= 1"},
      {"step_error:at=-1", "at: '-1' is not a step number >= 1"},
      {"step_error:sometimes", "step_error takes every=N or at=K[,K...]"},
      {"step_delay_ms=60001", "step_delay_ms must be an integer in [0, 60000]"},
      {"step_delay_ms=", "step_delay_ms must be an integer in [0, 60000]"},
      {"oom", "clause 'oom': unknown fault (have: step_error, step_delay_ms)"},
  };
  for (const auto& [text, message] : cases) {
    auto spec = ParseFaultSpec(text);
    ASSERT_FALSE(spec.ok()) << "'" << text << "' parsed";
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(spec.status().message(), HasSubstr(message)) << text;
  }
}

// --- the engine with faults ---------------------------------------------------------------

struct Result {
  std::vector<std::vector<int32_t>> ids;  // per sample
  std::vector<FinishReason> reasons;
  std::optional<RequestUsage> usage;
  absl::Status status;
  int num_finished_events = 0;
};

Result Collect(RequestStream& stream, int n) {
  Result r;
  r.ids.resize(n);
  r.reasons.assign(n, FinishReason::kNone);
  TokenEvent ev;
  while (stream.Next(&ev, 60.0)) {
    EXPECT_EQ(r.reasons[ev.index], FinishReason::kNone) << "event after finish";
    r.ids[ev.index].insert(r.ids[ev.index].end(), ev.token_ids.begin(), ev.token_ids.end());
    if (ev.finished) {
      r.reasons[ev.index] = ev.finish_reason;
      ++r.num_finished_events;
    }
    if (!ev.status.ok()) r.status = ev.status;
    if (ev.usage) r.usage = ev.usage;
  }
  EXPECT_TRUE(stream.IsClosed());
  EXPECT_EQ(r.num_finished_events, n);
  EXPECT_TRUE(r.usage.has_value());
  return r;
}

// Holds the first step until Release(), so that every request submitted meanwhile reaches
// the engine's inbox together and is planned into step 2 by the scheduler's policy alone.
class GatedExecutor final : public ModelExecutor {
 public:
  explicit GatedExecutor(std::unique_ptr<ModelExecutor> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  int max_num_tokens() const override { return inner_->max_num_tokens(); }
  int max_num_logits() const override { return inner_->max_num_logits(); }
  std::string Describe() const override { return inner_->Describe(); }
  absl::Status Execute(const BatchPlan& plan, std::span<const BlockCopy> copies,
                       std::vector<float>* logits) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (num_calls_++ == 0) {
        cv_.notify_all();
        cv_.wait(lock, [&] { return released_; });
      }
    }
    return inner_->Execute(plan, copies, logits);
  }
  void WaitUntilFirstStep() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return num_calls_ > 0; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::unique_ptr<ModelExecutor> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int num_calls_ = 0;
  bool released_ = false;
};

class FaultInjectionEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
    auto m = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    metrics::ServingMetricsOptions mo;
    mo.model_name = "stories";
    serving_metrics_ = std::make_unique<metrics::ServingMetrics>(registry_, SystemClock::Get(), mo);
  }

  absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeExecutor(const std::string& faults,
                                                              int max_num_seqs = 8) {
    ExecutorOptions eo;
    eo.num_threads = 2;
    eo.num_kv_blocks = 64;
    eo.max_num_tokens = 256;
    eo.max_num_logits = max_num_seqs;
    eo.inject_faults = faults;
    return MakeModelExecutor(*model_, eo);
  }

  std::unique_ptr<Engine> MakeEngine(std::unique_ptr<ModelExecutor> exec, int max_num_seqs = 8) {
    EngineOptions opts;
    opts.scheduler.max_num_seqs = max_num_seqs;
    opts.scheduler.max_num_batched_tokens = 256;
    opts.accounting.metrics = serving_metrics_.get();
    auto engine = Engine::Create(opts, std::move(exec));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return std::move(engine).value();
  }

  std::vector<int32_t> RandomPrompt(std::mt19937& rng, int len) {
    std::uniform_int_distribution<int32_t> tok(3, model_->config.vocab_size - 1);
    std::vector<int32_t> p{1};
    for (int i = 1; i < len; ++i) p.push_back(tok(rng));
    return p;
  }

  static EngineRequest Greedy(std::vector<int32_t> prompt, int max_tokens, int n = 1) {
    EngineRequest r;
    r.prompt_ids = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    r.n = n;
    return r;
  }

  std::vector<int32_t> GreedyAlone(const std::vector<int32_t>& prompt, int max_tokens) {
    testing::SingleSequenceRunner alone(*model_);
    return alone.Greedy(prompt, max_tokens);
  }

  double MetricValue(const std::string& family, const std::map<std::string, std::string>& labels) {
    auto parsed = metrics::testing::ParseExposition(registry_.RenderText());
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok() || !metrics::testing::HasSample(*parsed, family, family, labels)) return 0;
    return metrics::testing::SampleValue(*parsed, family, family, labels);
  }

  // Every block is free or cached-free: nothing held, nothing lost.
  static void ExpectAllBlocksBack(Engine& engine) {
    ASSERT_TRUE(engine.WaitUntilIdle(10));
    const EngineStats st = engine.stats();
    EXPECT_EQ(st.num_pending_requests, 0);
    EXPECT_EQ(st.num_running, 0);
    EXPECT_EQ(st.num_waiting, 0);
    EXPECT_EQ(st.kv.num_used_blocks, 0);
    EXPECT_EQ(st.kv.num_free_blocks + st.kv.num_cached_free_blocks, st.kv.num_blocks);
  }

  std::unique_ptr<LoadedModel> model_;
  metrics::MetricRegistry registry_;
  std::unique_ptr<metrics::ServingMetrics> serving_metrics_;
};

TEST_F(FaultInjectionEngineTest, BadSpecFailsExecutorCreationAndAGoodOneSaysSoInDescribe) {
  auto bad = MakeExecutor("step_error:every=0");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("inject_faults: clause 'step_error:every=0'"));
  auto good = MakeExecutor("step_error:at=2");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_THAT((*good)->Describe(), HasSubstr("FAULT INJECTION step_error:at=2"));
  auto off = MakeExecutor("");
  ASSERT_TRUE(off.ok());
  EXPECT_THAT((*off)->Describe(), ::testing::Not(HasSubstr("FAULT")));
}

TEST_F(FaultInjectionEngineTest, FailedStepFailsExactlyItsRequestsAndTheRestComplete) {
  auto exec = MakeExecutor("step_error:at=2", /*max_num_seqs=*/4);
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto gated = std::make_unique<GatedExecutor>(*std::move(exec));
  GatedExecutor* gate = gated.get();
  auto engine = MakeEngine(std::move(gated), /*max_num_seqs=*/4);
  absl::Cleanup release = [gate] { gate->Release(); };  // before the engine joins its thread

  std::mt19937 rng(7);
  // Step 1: W's prefill alone. Step 2 (the failing one): W's first decode plus the prefills
  // of A (n = 2, two slots) and B, which fill max_num_seqs = 4; C..F wait and run later.
  std::vector<EngineRequest> reqs = {Greedy(RandomPrompt(rng, 9), 30)};
  reqs.push_back(Greedy(RandomPrompt(rng, 40), 12, /*n=*/2));
  for (int len : {21, 5, 33, 17, 26}) reqs.push_back(Greedy(RandomPrompt(rng, len), 12));
  std::vector<std::shared_ptr<RequestStream>> streams;
  streams.push_back(*engine->Submit(reqs[0]));
  gate->WaitUntilFirstStep();
  for (size_t i = 1; i < reqs.size(); ++i) streams.push_back(*engine->Submit(reqs[i]));
  gate->Release();

  for (size_t i = 0; i < reqs.size(); ++i) {
    const Result got = Collect(*streams[i], reqs[i].n);
    if (i < 3) {  // W, A, B: in the failed step
      for (FinishReason fr : got.reasons) EXPECT_EQ(fr, FinishReason::kError) << "request " << i;
      EXPECT_EQ(got.status.code(), absl::StatusCode::kInternal) << "request " << i;
      EXPECT_THAT(got.status.message(), HasSubstr("step failed: injected fault: step 2"));
      // W had sampled its first token in step 1; A and B had sampled nothing.
      EXPECT_EQ(got.usage->generated_tokens, i == 0 ? 1 : 0) << "request " << i;
    } else {
      EXPECT_TRUE(got.status.ok()) << "request " << i << ": " << got.status;
      EXPECT_EQ(got.reasons[0], FinishReason::kLength) << "request " << i;
      EXPECT_EQ(got.ids[0], GreedyAlone(reqs[i].prompt_ids, 12)) << "request " << i;
    }
  }
  ExpectAllBlocksBack(*engine);
  EXPECT_EQ(engine->stats().num_failed_steps, 1);
  EXPECT_EQ(MetricValue("tokenmill:request_errors_total", {{"error_code", "internal"}}), 3);
  EXPECT_EQ(MetricValue("tokenmill:request_success_total", {{"finished_reason", "length"}}), 4);

  // A's prompt again: its failed prefill left nothing in the prefix cache, and the engine
  // gives exactly what a fresh engine gives.
  const Result again = Collect(**engine->Submit(Greedy(reqs[1].prompt_ids, 12)), 1);
  EXPECT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.usage->cached_tokens, 0);
  auto fresh_exec = MakeExecutor("");
  ASSERT_TRUE(fresh_exec.ok());
  auto fresh = MakeEngine(*std::move(fresh_exec));
  const Result expected = Collect(**fresh->Submit(Greedy(reqs[1].prompt_ids, 12)), 1);
  EXPECT_EQ(again.ids[0], expected.ids[0]);
  ExpectAllBlocksBack(*engine);
}

TEST_F(FaultInjectionEngineTest, FailureMidDecodeKeepsStreamedTokensAndCachedPromptIsValid) {
  auto exec = MakeExecutor("step_error:at=6");
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto engine = MakeEngine(*std::move(exec));
  std::mt19937 rng(21);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 50);  // three full blocks of 16
  const std::vector<int32_t> greedy = GreedyAlone(prompt, 20);

  // Step 1 prefills and samples token 1, steps 2..5 decode tokens 2..5, step 6 fails.
  const Result failed = Collect(**engine->Submit(Greedy(prompt, 20)), 1);
  EXPECT_EQ(failed.reasons[0], FinishReason::kError);
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(failed.ids[0], std::vector<int32_t>(greedy.begin(), greedy.begin() + 5));
  EXPECT_EQ(failed.usage->generated_tokens, 5);
  ExpectAllBlocksBack(*engine);
  EXPECT_GT(engine->stats().kv.num_cached_free_blocks, 0) << "the prompt's blocks stay cached";
  // No step ran after the failure; the gauges still show the idle engine.
  EXPECT_EQ(MetricValue("tokenmill:num_requests_running", {}), 0);
  EXPECT_EQ(MetricValue("tokenmill:kv_cache_usage_perc", {}), 0);

  // The prompt, computed by a step that succeeded, is served from the prefix cache and the
  // output is the greedy one.
  const Result again = Collect(**engine->Submit(Greedy(prompt, 20)), 1);
  EXPECT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.usage->cached_tokens, 48);
  EXPECT_EQ(again.ids[0], greedy);
  ExpectAllBlocksBack(*engine);
  EXPECT_EQ(MetricValue("tokenmill:request_errors_total", {{"error_code", "internal"}}), 1);
}

TEST_F(FaultInjectionEngineTest, PeriodicFailuresUnderLoadNeverLeakOrCorrupt) {
  auto exec = MakeExecutor("step_error:every=9");
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto engine = MakeEngine(*std::move(exec));
  std::mt19937 rng(99);
  struct Item {
    EngineRequest request;
    std::shared_ptr<RequestStream> stream;
  };
  std::vector<Item> items;
  for (int i = 0; i < 30; ++i) {
    EngineRequest r = Greedy(RandomPrompt(rng, 2 + static_cast<int>(rng() % 40)),
                             1 + static_cast<int>(rng() % 10), 1 + static_cast<int>(rng() % 2));
    if (r.n > 1) r.sampling.temperature = 0.8f, r.sampling.seed = rng();
    auto s = engine->Submit(r);
    ASSERT_TRUE(s.ok()) << s.status();
    items.push_back({r, *s});
  }
  int num_failed = 0;
  for (Item& it : items) {
    const Result got = Collect(*it.stream, it.request.n);
    const bool failed = got.reasons[0] == FinishReason::kError;
    for (FinishReason fr : got.reasons) EXPECT_EQ(fr == FinishReason::kError, failed);
    if (failed) {
      ++num_failed;
      EXPECT_EQ(got.status.code(), absl::StatusCode::kInternal);
      EXPECT_THAT(got.status.message(), HasSubstr("injected fault"));
      continue;
    }
    EXPECT_TRUE(got.status.ok()) << got.status;
    for (FinishReason fr : got.reasons) EXPECT_EQ(fr, FinishReason::kLength);
    if (it.request.n == 1) {
      EXPECT_EQ(got.ids[0], GreedyAlone(it.request.prompt_ids, it.request.sampling.max_tokens));
    }
  }
  ExpectAllBlocksBack(*engine);
  const EngineStats st = engine->stats();
  EXPECT_GT(st.num_failed_steps, 0);
  EXPECT_EQ(st.num_failed_steps, (st.num_steps + st.num_failed_steps) / 9);
  EXPECT_GT(num_failed, 0);
  EXPECT_LT(num_failed, static_cast<int>(items.size()));
  EXPECT_EQ(MetricValue("tokenmill:request_errors_total", {{"error_code", "internal"}}),
            num_failed);
}

}  // namespace
}  // namespace tokenmill
