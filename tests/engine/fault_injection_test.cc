// Fault injection (engine/fault_injection.h) and what the engine does with a failed step:
// exactly the requests in that step fail with INTERNAL, every other request completes with
// the tokens it would have produced anyway, no KV block leaks, no failed KV reaches the
// prefix cache, and the metrics count the failures as errors. A failed step's time and
// energy go to its requests, so the records add up to the meter. A step that throws fails
// the engine for good: every pending request ends with INTERNAL naming the cause, later
// submissions are refused, health() and the failure observers say so, logged once.
#include "tokenmill/engine/fault_injection.h"

#include <climits>
#include <condition_variable>
#include <functional>
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
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"
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
  auto spec =
      ParseFaultSpec(" step_error:at=7,3,3 ; step_throw:at=9;step_error:every=5;step_delay_ms=12 ");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->error_every, 5);
  EXPECT_EQ(spec->error_at_steps, (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(spec->delay_ms, 12);
  EXPECT_EQ(spec->throw_at_step, 9);
  EXPECT_EQ(spec->ToString(),
            "step_error:every=5;step_error:at=3,7;step_delay_ms=12;step_throw:at=9");
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
  const FaultSpec throws = *ParseFaultSpec("step_throw:at=4");
  EXPECT_FALSE(throws.is_empty());
  EXPECT_FALSE(throws.FailsStep(4));
  EXPECT_FALSE(throws.ThrowsAtStep(3));
  EXPECT_TRUE(throws.ThrowsAtStep(4));
  EXPECT_FALSE(throws.ThrowsAtStep(5));
  EXPECT_FALSE(at.ThrowsAtStep(1));
}

TEST(FaultSpecTest, AThrowingStepRunsNothingAndThrows) {
  class Counting final : public ModelExecutor {
   public:
    explicit Counting(int* num_calls) : num_calls_(num_calls) {}
    const ModelConfig& config() const override { return config_; }
    int num_kv_blocks() const override { return 1; }
    int block_size() const override { return 16; }
    int max_num_tokens() const override { return 1; }
    int max_num_logits() const override { return 1; }
    std::string Describe() const override { return "counting"; }
    absl::Status Execute(const BatchPlan&, std::span<const BlockCopy>,
                         std::vector<float>*) override {
      ++*num_calls_;
      return absl::OkStatus();
    }

   private:
    ModelConfig config_;
    int* num_calls_;
  };
  int num_calls = 0;
  auto exec = MakeFaultInjectingExecutor(std::make_unique<Counting>(&num_calls),
                                         *ParseFaultSpec("step_throw:at=2;step_error:at=2"));
  BatchPlan plan;
  std::vector<float> logits;
  EXPECT_TRUE(exec->Execute(plan, {}, &logits).ok());
  try {
    (void)exec->Execute(plan, {}, &logits);
    ADD_FAILURE() << "step 2 did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "injected fault: step 2 throws (step_error:at=2;step_throw:at=2)");
  }
  EXPECT_EQ(num_calls, 1) << "a throwing step runs nothing";
  EXPECT_TRUE(exec->Execute(plan, {}, &logits).ok());
  EXPECT_EQ(num_calls, 2);
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
      {"step_throw:at=0", "clause 'step_throw:at=0': at: '0' is not a step number >= 1"},
      {"step_throw:at=2,3", "at: '2,3' is not a step number >= 1"},
      {"step_throw:every=2", "step_throw takes at=K"},
      {"step_throw:at=2;step_throw:at=5", "step_throw is given twice"},
      {"oom", "clause 'oom': unknown fault (have: step_error, step_delay_ms, step_throw)"},
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

// Holds each step (Execute() call) until the test allows it, so that what is in the step,
// in the scheduler's queue and in the engine's inbox at a chosen step is known: requests
// submitted while call K is held reach the inbox together and are planned into step K + 1 by
// the scheduler's policy alone. `before_each` (optional) runs as each allowed call starts.
class SteppedExecutor final : public ModelExecutor {
 public:
  explicit SteppedExecutor(std::unique_ptr<ModelExecutor> inner,
                           std::function<void(const BatchPlan&)> before_each = nullptr)
      : inner_(std::move(inner)), before_each_(std::move(before_each)) {}
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
      const int call = ++num_calls_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return call <= num_allowed_; });
    }
    if (before_each_) before_each_(plan);
    return inner_->Execute(plan, copies, logits);
  }
  // Waits until call `k` (from 1) has begun.
  void WaitForCall(int k) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return num_calls_ >= k; });
  }
  void Allow(int num_calls) {
    std::lock_guard<std::mutex> lock(mu_);
    num_allowed_ += num_calls;
    cv_.notify_all();
  }
  void AllowAll() { Allow(INT_MAX / 2); }

 private:
  std::unique_ptr<ModelExecutor> inner_;
  const std::function<void(const BatchPlan&)> before_each_;
  std::mutex mu_;
  std::condition_variable cv_;
  int num_calls_ = 0;
  int num_allowed_ = 0;
};

// Captures the default logger's messages while it lives; the previous logger is restored.
class CapturedLog {
 public:
  CapturedLog()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1024)),
        previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink_));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  // Messages at `level` or above that contain `text`.
  int Count(spdlog::level::level_enum level, const std::string& text) const {
    int n = 0;
    for (const auto& m : sink_->last_raw()) {
      const std::string payload(m.payload.data(), m.payload.size());
      n += m.level >= level && payload.find(text) != std::string::npos;
    }
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
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

  // `accounting` replaces the fixture's (metrics only) when given.
  std::unique_ptr<Engine> MakeEngine(std::unique_ptr<ModelExecutor> exec, int max_num_seqs = 8,
                                     const EngineAccounting* accounting = nullptr,
                                     const Clock* clock = &SystemClock::Get()) {
    EngineOptions opts;
    opts.scheduler.max_num_seqs = max_num_seqs;
    opts.scheduler.max_num_batched_tokens = 256;
    opts.accounting.metrics = serving_metrics_.get();
    if (accounting != nullptr) opts.accounting = *accounting;
    auto engine = Engine::Create(opts, std::move(exec), clock);
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

  double MetricValue(const std::string& family, const std::map<std::string, std::string>& labels,
                     const metrics::MetricRegistry* registry = nullptr) {
    if (registry == nullptr) registry = &registry_;
    auto parsed = metrics::testing::ParseExposition(registry->RenderText());
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
  auto stepped = std::make_unique<SteppedExecutor>(*std::move(exec));
  SteppedExecutor* steps = stepped.get();
  auto engine = MakeEngine(std::move(stepped), /*max_num_seqs=*/4);
  absl::Cleanup release = [steps] { steps->AllowAll(); };  // before the engine joins its thread

  std::mt19937 rng(7);
  // Step 1: W's prefill alone. Step 2 (the failing one): W's first decode plus the prefills
  // of A (n = 2, two slots) and B, which fill max_num_seqs = 4; C..F wait and run later.
  std::vector<EngineRequest> reqs = {Greedy(RandomPrompt(rng, 9), 30)};
  reqs.push_back(Greedy(RandomPrompt(rng, 40), 12, /*n=*/2));
  for (int len : {21, 5, 33, 17, 26}) reqs.push_back(Greedy(RandomPrompt(rng, len), 12));
  std::vector<std::shared_ptr<RequestStream>> streams;
  streams.push_back(*engine->Submit(reqs[0]));
  steps->WaitForCall(1);
  for (size_t i = 1; i < reqs.size(); ++i) streams.push_back(*engine->Submit(reqs[i]));
  steps->AllowAll();

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

// --- a step that throws: the engine fails for good ----------------------------------------

TEST_F(FaultInjectionEngineTest, AThrowingStepFailsTheEngineAndEveryPendingRequestEnds) {
  CapturedLog log;
  auto exec = MakeExecutor("step_throw:at=2", /*max_num_seqs=*/2);
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto stepped = std::make_unique<SteppedExecutor>(*std::move(exec));
  SteppedExecutor* steps = stepped.get();
  auto engine = MakeEngine(std::move(stepped), /*max_num_seqs=*/2);
  absl::Cleanup release = [steps] { steps->AllowAll(); };
  const std::string cause =
      "engine failed: step thread died: injected fault: step 2 throws (step_throw:at=2)";

  std::mt19937 rng(5);
  const EngineRequest running = Greedy(RandomPrompt(rng, 9), 30, /*n=*/2);
  const EngineRequest waiting = Greedy(RandomPrompt(rng, 12), 5);
  const EngineRequest in_inbox = Greedy(RandomPrompt(rng, 7), 5, /*n=*/2);
  // Step 1 prefills `running`, whose two samples take both slots; `waiting` arrives
  // meanwhile and waits in the scheduler; `in_inbox` arrives while step 2 runs, so it is
  // still in the engine's inbox when step 2 throws.
  auto running_stream = *engine->Submit(running);
  steps->WaitForCall(1);
  auto waiting_stream = *engine->Submit(waiting);
  steps->Allow(1);
  steps->WaitForCall(2);
  auto inbox_stream = *engine->Submit(in_inbox);
  EXPECT_TRUE(engine->health().ok());

  // The observer runs once the engine refuses and reports the failure, before any request
  // has been failed.
  std::mutex mu;
  std::vector<std::string> observed;
  engine->AddFailureObserver([&](const absl::Status& why) {
    std::lock_guard<std::mutex> lock(mu);
    observed.push_back(std::string(why.message()));
    EXPECT_EQ(why.code(), absl::StatusCode::kInternal);
    EXPECT_FALSE(engine->health().ok());
    EXPECT_EQ(engine->Submit(Greedy({1, 5}, 2)).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_FALSE(running_stream->IsClosed());
  });
  steps->Allow(1);

  const Result r = Collect(*running_stream, 2);
  const Result w = Collect(*waiting_stream, 1);
  const Result x = Collect(*inbox_stream, 2);
  for (const Result* got : {&r, &w, &x}) {
    for (FinishReason fr : got->reasons) EXPECT_EQ(fr, FinishReason::kError);
    EXPECT_EQ(got->status.code(), absl::StatusCode::kInternal);
    EXPECT_EQ(got->status.message(), cause);
    EXPECT_EQ(got->usage->record.finish_reason, "error");
    EXPECT_EQ(got->usage->record.error_code, "internal");
  }
  // Tokens streamed before the failure stay delivered and counted.
  EXPECT_EQ(r.ids[0], GreedyAlone(running.prompt_ids, 1));
  EXPECT_EQ(r.ids[1], r.ids[0]);
  EXPECT_EQ(r.usage->generated_tokens, 2);
  EXPECT_EQ(w.usage->generated_tokens, 0);
  EXPECT_EQ(x.usage->generated_tokens, 0);
  EXPECT_FALSE(w.usage->record.queue_s.has_value()) << "never scheduled";

  // For good: unhealthy, refusing, idle, nothing left running or waiting.
  EXPECT_EQ(engine->health().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(engine->health().message(), cause);
  auto refused = engine->Submit(Greedy(running.prompt_ids, 3));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.status().message(), cause + "; not accepting requests");
  ASSERT_TRUE(engine->WaitUntilIdle(10));
  const EngineStats st = engine->stats();
  EXPECT_EQ(st.num_pending_requests, 0);
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.num_waiting, 0);
  EXPECT_EQ(st.num_steps, 1);
  EXPECT_EQ(st.num_failed_steps, 1);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(observed, std::vector<std::string>{cause});
  }
  // An observer added after the failure hears of it at once.
  std::string late;
  engine->AddFailureObserver([&](const absl::Status& why) { late = std::string(why.message()); });
  EXPECT_EQ(late, cause);

  EXPECT_EQ(MetricValue("tokenmill:request_errors_total", {{"error_code", "internal"}}), 3);
  EXPECT_EQ(MetricValue("tokenmill:engine_failed_steps_total", {}), 1);
  EXPECT_EQ(MetricValue("tokenmill:num_requests_running", {}), 0);
  EXPECT_EQ(MetricValue("tokenmill:num_requests_waiting", {}), 0);
  EXPECT_EQ(log.Count(spdlog::level::err, "step thread died"), 1);
  EXPECT_EQ(log.Count(spdlog::level::err, "failing 3 pending requests"), 1);
  engine->Shutdown();  // joins a thread that has already ended
}

TEST_F(FaultInjectionEngineTest, AnExceptionOfAnyTypeFailsTheEngine) {
  class ThrowsInt final : public ModelExecutor {
   public:
    explicit ThrowsInt(std::unique_ptr<ModelExecutor> inner) : inner_(std::move(inner)) {}
    const ModelConfig& config() const override { return inner_->config(); }
    int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
    int block_size() const override { return inner_->block_size(); }
    int max_num_tokens() const override { return inner_->max_num_tokens(); }
    int max_num_logits() const override { return inner_->max_num_logits(); }
    std::string Describe() const override { return "throws int"; }
    absl::Status Execute(const BatchPlan&, std::span<const BlockCopy>,
                         std::vector<float>*) override {
      throw 42;
    }

   private:
    std::unique_ptr<ModelExecutor> inner_;
  };
  auto exec = MakeExecutor("");
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto engine = MakeEngine(std::make_unique<ThrowsInt>(*std::move(exec)));
  const Result got = Collect(**engine->Submit(Greedy({1, 7, 9}, 4)), 1);
  EXPECT_EQ(got.reasons[0], FinishReason::kError);
  EXPECT_EQ(got.status.message(), "engine failed: step thread died: unknown exception");
  EXPECT_EQ(engine->Submit(Greedy({1, 7}, 4)).status().code(), absl::StatusCode::kUnavailable);
}

// --- accounting of failed steps --------------------------------------------------------------

TEST_F(FaultInjectionEngineTest, FailedStepsTimeEnergyAndCostGoToTheirRequestsAndAddUp) {
  // Each step takes 10 ms and 1 mJ + 37 uJ per token on a fake clock and meter, whether it
  // succeeds, fails or throws. With two slots the plan is known: step 1 prefills S; 2: S
  // decodes, A prefills; 3 FAILS (S, A); 4-5: B, C; 6 FAILS (B, C); 7-8: D, E; 9 THROWS (D,
  // E; F still waiting, never scheduled).
  FakeClock clock;
  metrics::FakeEnergyMeter meter;
  metrics::MetricRegistry registry;
  metrics::ServingMetricsOptions mo;
  mo.model_name = "stories";
  mo.energy_source = metrics::EnergySource::kNvml;
  metrics::ServingMetrics serving(registry, clock, mo, &meter);
  EngineAccounting accounting{&meter, &serving, nullptr, {}};
  accounting.cost.defaults.price_per_device_hour = 3.6;
  accounting.cost.defaults.price_per_kwh = 0.5;
  accounting.cost.defaults.pue = 1.2;
  constexpr int64_t kStepNs = 10'000'000;
  auto exec = MakeExecutor("step_error:at=3,6;step_throw:at=9", /*max_num_seqs=*/2);
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto stepped = std::make_unique<SteppedExecutor>(*std::move(exec), [&](const BatchPlan& plan) {
    clock.Advance(static_cast<double>(kStepNs) * 1e-9);
    meter.AddMicrojoules(1000 + 37 * static_cast<int64_t>(plan.token_ids.size()));
  });
  SteppedExecutor* steps = stepped.get();
  auto engine = MakeEngine(std::move(stepped), /*max_num_seqs=*/2, &accounting, &clock);
  absl::Cleanup release = [steps] { steps->AllowAll(); };

  std::mt19937 rng(11);
  std::vector<std::shared_ptr<RequestStream>> streams;
  streams.push_back(*engine->Submit(Greedy(RandomPrompt(rng, 30), 20)));  // S
  steps->WaitForCall(1);
  for (int len : {17, 40, 9, 25, 33, 12}) {  // A..F
    streams.push_back(*engine->Submit(Greedy(RandomPrompt(rng, len), 4)));
  }
  steps->AllowAll();
  std::vector<metrics::RequestRecord> records;
  for (auto& stream : streams) {
    const Result got = Collect(*stream, 1);
    EXPECT_EQ(got.status.code(), absl::StatusCode::kInternal);
    records.push_back(got.usage->record);
  }
  ASSERT_TRUE(engine->WaitUntilIdle(10));
  EXPECT_EQ(engine->stats().num_steps, 6);
  EXPECT_EQ(engine->stats().num_failed_steps, 3);

  const int64_t meter_uj = *meter.ReadEnergyMicrojoules();
  int64_t device_ns = 0, energy_uj = 0;
  double cost = 0;
  for (const metrics::RequestRecord& r : records) {
    ASSERT_TRUE(r.joules.has_value()) << r.request_id;
    device_ns += std::llround(r.device_s * 1e9);
    energy_uj += std::llround(*r.joules * 1e6);
    cost += r.cost;
  }
  // Nothing lost: every step's time and energy, failed or thrown ones included, is in the
  // requests' records.
  EXPECT_EQ(device_ns, 9 * kStepNs);
  EXPECT_EQ(energy_uj, meter_uj);
  const double expected_cost = 9 * 0.01 / 3600 * 3.6 + meter_uj * 1e-6 / 3.6e6 * 1.2 * 0.5;
  EXPECT_NEAR(cost, expected_cost, 1e-12);
  // A only ran in steps 2 and 3 (the failed one); F never ran and used nothing.
  EXPECT_GT(records[1].device_s, 0.005);
  EXPECT_EQ(records[6].device_s, 0);
  EXPECT_EQ(records[6].joules, 0);
  // S's and A's shares of steps 1-3 are all of those steps.
  EXPECT_EQ(std::llround(records[0].device_s * 1e9) + std::llround(records[1].device_s * 1e9),
            3 * kStepNs);

  // The metrics agree: step energy (every step), attributed energy and device time.
  const double meter_j = static_cast<double>(meter_uj) * 1e-6;
  EXPECT_NEAR(MetricValue("tokenmill:step_energy_joules_total", {}, &registry), meter_j, 1e-9);
  EXPECT_NEAR(MetricValue("tokenmill:energy_joules_total", {}, &registry), meter_j, 1e-9);
  EXPECT_NEAR(MetricValue("tokenmill:request_device_seconds_total", {}, &registry), 0.09, 1e-9);
  EXPECT_EQ(MetricValue("tokenmill:engine_failed_steps_total", {}, &registry), 3);
  EXPECT_EQ(MetricValue("tokenmill:request_errors_total", {{"error_code", "internal"}}, &registry),
            7);
}

}  // namespace
}  // namespace tokenmill
