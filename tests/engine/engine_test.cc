// The engine end to end on the CPU backend with real models: batch invariance, prefix
// caching, preemption under a tiny KV budget, cancellation, deadlines, bad input.
#include "tokenmill/engine/engine.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/model_runner.h"
#include "nlohmann/json.hpp"
#include "testing/testdata.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

struct Result {
  std::vector<std::vector<int32_t>> ids;  // per sample
  std::vector<FinishReason> reasons;
  std::optional<RequestUsage> usage;
  absl::Status status;
  int num_events = 0;
};

Result Collect(RequestStream& stream, int n) {
  Result r;
  r.ids.resize(n);
  r.reasons.assign(n, FinishReason::kNone);
  TokenEvent ev;
  while (stream.Next(&ev, 60.0)) {
    ++r.num_events;
    EXPECT_FALSE(r.reasons[ev.index] != FinishReason::kNone) << "event after finish";
    r.ids[ev.index].insert(r.ids[ev.index].end(), ev.token_ids.begin(), ev.token_ids.end());
    if (ev.finished) r.reasons[ev.index] = ev.finish_reason;
    if (!ev.status.ok()) r.status = ev.status;
    if (ev.usage) r.usage = ev.usage;
  }
  EXPECT_TRUE(stream.IsClosed());
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
    auto m = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
  }

  std::unique_ptr<Engine> MakeEngine(int num_blocks, int max_num_seqs = 64,
                                     int max_batched = 256, int block_size = 16) {
    ExecutorOptions eo;
    eo.num_threads = 2;
    eo.num_kv_blocks = num_blocks;
    eo.block_size = block_size;
    eo.max_num_tokens = max_batched;
    eo.max_num_logits = max_num_seqs;
    auto exec = MakeModelExecutor(*model_, eo);
    EXPECT_TRUE(exec.ok()) << exec.status();
    EngineOptions opts;
    opts.scheduler.max_num_seqs = max_num_seqs;
    opts.scheduler.max_num_batched_tokens = max_batched;
    auto engine = Engine::Create(opts, std::move(exec).value());
    EXPECT_TRUE(engine.ok()) << engine.status();
    return std::move(engine).value();
  }

  std::vector<int32_t> RandomPrompt(std::mt19937& rng, int len) {
    std::uniform_int_distribution<int32_t> tok(3, model_->config.vocab_size - 1);
    std::vector<int32_t> p{1};
    for (int i = 1; i < len; ++i) p.push_back(tok(rng));
    return p;
  }

  EngineRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
    EngineRequest r;
    r.prompt_ids = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return r;
  }

  std::unique_ptr<LoadedModel> model_;
};

TEST_F(EngineTest, BusyEngineGivesTheSameGreedyTokensAsARunAlone) {
  std::mt19937 rng(11);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 24; ++i) {
    reqs.push_back(Greedy(RandomPrompt(rng, 5 + static_cast<int>(rng() % 60)),
                          8 + static_cast<int>(rng() % 40)));
  }
  auto engine = MakeEngine(/*num_blocks=*/512, /*max_num_seqs=*/16, /*max_batched=*/64);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const EngineRequest& r : reqs) {
    auto s = engine->Submit(r);
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Result got = Collect(*streams[i], 1);
    testing::SingleSequenceRunner alone(*model_);
    EXPECT_EQ(got.ids[0], alone.Greedy(reqs[i].prompt_ids, reqs[i].sampling.max_tokens))
        << "request " << i;
    EXPECT_EQ(got.reasons[0], FinishReason::kLength);
    ASSERT_TRUE(got.usage.has_value());
    EXPECT_EQ(got.usage->generated_tokens, reqs[i].sampling.max_tokens);
  }
  EXPECT_TRUE(engine->WaitUntilIdle(10));
  EXPECT_EQ(engine->stats().kv.num_used_blocks, 0);
}

TEST_F(EngineTest, SharedPrefixIsComputedOnceAndGivesTheSameOutput) {
  std::mt19937 rng(5);
  std::vector<int32_t> prefix = RandomPrompt(rng, 100);
  std::vector<int32_t> a = prefix, b = prefix;
  a.insert(a.end(), {40, 41, 42});
  b.insert(b.end(), {50, 51});
  auto engine = MakeEngine(256);
  Result first = Collect(**engine->Submit(Greedy(a, 10)), 1);
  Result second = Collect(**engine->Submit(Greedy(b, 10)), 1);
  ASSERT_TRUE(second.usage.has_value());
  EXPECT_EQ(second.usage->cached_tokens, 96);  // six full blocks of 16
  EXPECT_EQ(second.usage->prefill_tokens_computed, static_cast<int>(b.size()) - 96);
  testing::SingleSequenceRunner alone(*model_);
  EXPECT_EQ(second.ids[0], alone.Greedy(b, 10));
  // The same prompt again: everything but its last block is served from the cache.
  Result again = Collect(**engine->Submit(Greedy(a, 10)), 1);
  EXPECT_EQ(again.ids[0], first.ids[0]);
  EXPECT_EQ(again.usage->cached_tokens, 96);
}

TEST_F(EngineTest, TinyKvBudgetPreemptsAndStillFinishesEveryRequest) {
  std::mt19937 rng(3);
  auto engine = MakeEngine(/*num_blocks=*/24, /*max_num_seqs=*/8, /*max_batched=*/64, 8);
  std::vector<EngineRequest> reqs;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 12; ++i) {
    reqs.push_back(Greedy(RandomPrompt(rng, 20 + static_cast<int>(rng() % 20)), 40));
    streams.push_back(*engine->Submit(reqs.back()));
  }
  int preemptions = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Result got = Collect(*streams[i], 1);
    testing::SingleSequenceRunner alone(*model_);
    EXPECT_EQ(got.ids[0], alone.Greedy(reqs[i].prompt_ids, 40)) << "request " << i;
    preemptions += got.usage->num_preemptions;
  }
  EXPECT_GT(preemptions, 0) << "the budget was meant to force preemption";
  EXPECT_TRUE(engine->WaitUntilIdle(10));
  const EngineStats st = engine->stats();
  EXPECT_EQ(st.kv.num_used_blocks, 0);
  EXPECT_EQ(st.num_pending_requests, 0);
}

TEST_F(EngineTest, RandomArrivalsCancellationsDeadlinesAndSamplesAllEndCleanly) {
  std::mt19937 rng(1234);
  auto engine = MakeEngine(/*num_blocks=*/40, /*max_num_seqs=*/16, /*max_batched=*/48, 8);
  struct Item {
    std::shared_ptr<RequestStream> stream;
    int n;
    bool cancel;
    bool deadline;
  };
  std::vector<Item> items;
  for (int i = 0; i < 60; ++i) {
    EngineRequest r = Greedy(RandomPrompt(rng, 2 + static_cast<int>(rng() % 50)),
                             1 + static_cast<int>(rng() % 30));
    r.n = 1 + static_cast<int>(rng() % 3);
    r.sampling.temperature = (rng() % 2) ? 0.8f : 0.0f;
    r.sampling.seed = rng();
    r.priority = static_cast<int>(rng() % 3);
    r.tenant = (rng() % 2) ? "a" : "b";
    const bool deadline = rng() % 10 == 0;
    if (deadline) r.deadline_s = SystemClock::Get().NowSeconds() + 0.001;
    auto s = engine->Submit(r);
    ASSERT_TRUE(s.ok()) << s.status();
    items.push_back({*s, r.n, rng() % 8 == 0, deadline});
    if (items.back().cancel) engine->Cancel((*s)->request_id());
  }
  for (Item& it : items) {
    const Result got = Collect(*it.stream, it.n);
    ASSERT_TRUE(got.usage.has_value());
    for (FinishReason fr : got.reasons) {
      EXPECT_NE(fr, FinishReason::kNone);
      EXPECT_NE(fr, FinishReason::kError);
      if (fr == FinishReason::kCancelled) {
        EXPECT_TRUE(it.cancel);
      }
      if (fr == FinishReason::kDeadline) {
        EXPECT_TRUE(it.deadline);
      }
    }
  }
  EXPECT_TRUE(engine->WaitUntilIdle(10));
  EXPECT_EQ(engine->stats().kv.num_used_blocks, 0);
}

TEST_F(EngineTest, SeededSamplingIsReproducible) {
  auto engine = MakeEngine(128);
  EngineRequest r = Greedy({1, 403, 407, 261, 378}, 30);
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = 42;
  r.n = 2;
  const Result a = Collect(**engine->Submit(r), 2);
  const Result b = Collect(**engine->Submit(r), 2);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_NE(a.ids[0], a.ids[1]) << "samples of one request should differ";
}

TEST_F(EngineTest, BadRequestsAreRejectedWithTheFieldNamed) {
  auto engine = MakeEngine(64);
  EngineRequest empty = Greedy({}, 4);
  EXPECT_EQ(engine->Submit(empty).status().code(), absl::StatusCode::kInvalidArgument);
  EngineRequest bad_id = Greedy({1, 99999}, 4);
  auto s = engine->Submit(bad_id);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("99999"), std::string::npos);
  EngineRequest bad_temp = Greedy({1, 5}, 4);
  bad_temp.sampling.temperature = -1;
  EXPECT_NE(engine->Submit(bad_temp).status().message().find("temperature"), std::string::npos);
  EngineRequest too_long = Greedy(std::vector<int32_t>(5000, 5), 4);
  EXPECT_EQ(engine->Submit(too_long).status().code(), absl::StatusCode::kResourceExhausted);
  engine->StartDrain();
  EXPECT_EQ(engine->Submit(Greedy({1, 5}, 4)).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineTest, ShutdownEndsPendingRequests) {
  auto engine = MakeEngine(64);
  auto s = engine->Submit(Greedy({1, 5, 6}, 2000));
  ASSERT_TRUE(s.ok());
  engine->Shutdown();
  const Result got = Collect(**s, 1);
  EXPECT_EQ(got.reasons[0], FinishReason::kCancelled);
}

}  // namespace
}  // namespace tokenmill

namespace tokenmill {
namespace {

// Batch invariance on the Hugging Face reference checkpoints (GQA, llama3 and linear
// RoPE scaling, q/k/v bias, tied embeddings, BF16 and sharded F16 weights).
class EngineHfBatchInvarianceTest : public ::testing::TestWithParam<const char*> {};

TEST_P(EngineHfBatchInvarianceTest, BusyEngineMatchesRunsAlone) {
  auto model = LoadModel(testing::SourceDir() + "/tests/reference/hf/" + GetParam());
  ASSERT_TRUE(model.ok()) << model.status();
  ExecutorOptions eo;
  eo.num_threads = 2;
  eo.num_kv_blocks = 128;
  eo.block_size = 8;
  eo.max_num_tokens = 48;
  eo.max_num_logits = 8;
  auto exec = MakeModelExecutor(**model, eo);
  ASSERT_TRUE(exec.ok()) << exec.status();
  EngineOptions opts;
  opts.scheduler.max_num_seqs = 8;
  opts.scheduler.max_num_batched_tokens = 48;
  auto engine = Engine::Create(opts, std::move(exec).value());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::mt19937 rng(17);
  std::uniform_int_distribution<int32_t> tok(0, (*model)->config.vocab_size - 1);
  std::vector<EngineRequest> reqs;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 12; ++i) {
    EngineRequest r;
    for (int k = 0, len = 3 + static_cast<int>(rng() % 40); k < len; ++k) {
      r.prompt_ids.push_back(tok(rng));
    }
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 4 + static_cast<int>(rng() % 12);
    r.sampling.ignore_eos = true;
    reqs.push_back(r);
    streams.push_back(*(*engine)->Submit(r));
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Result got = Collect(*streams[i], 1);
    testing::SingleSequenceRunner alone(**model);
    EXPECT_EQ(got.ids[0], alone.Greedy(reqs[i].prompt_ids, reqs[i].sampling.max_tokens))
        << GetParam() << " request " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, EngineHfBatchInvarianceTest,
                         ::testing::Values("llama3_gqa", "llama_linear_bf16", "llama_sharded_f16",
                                           "mistral_gqa", "qwen2_bias_tied"));

}  // namespace
}  // namespace tokenmill
