// The engine at tensor parallelism 2 (loopback ranks on the CPU backend), with the
// randomized workloads of engine_test.cc: batch invariance against a one-rank run, prefix
// caching, preemption under a tiny KV budget, random arrivals with cancellations and
// deadlines, seeded sampling. Then the executor's start-up errors, and the binary:
// `generate --output json --tensor-parallel 2` prints the ids of --tensor-parallel 1.
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/model_runner.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"
#include "tokenmill/engine/engine.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

constexpr int kTensorParallel = 2;

struct Result {
  std::vector<std::vector<int32_t>> ids;  // per sample
  std::vector<FinishReason> reasons;
  std::optional<RequestUsage> usage;
  absl::Status status;
};

Result Collect(RequestStream& stream, int n) {
  Result r;
  r.ids.resize(n);
  r.reasons.assign(n, FinishReason::kNone);
  TokenEvent ev;
  while (stream.Next(&ev, 60.0)) {
    r.ids[ev.index].insert(r.ids[ev.index].end(), ev.token_ids.begin(), ev.token_ids.end());
    if (ev.finished) r.reasons[ev.index] = ev.finish_reason;
    if (!ev.status.ok()) r.status = ev.status;
    if (ev.usage) r.usage = ev.usage;
  }
  EXPECT_TRUE(stream.IsClosed());
  return r;
}

class EngineTpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
    auto m = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
  }

  std::unique_ptr<Engine> MakeEngine(int num_blocks, int max_num_seqs = 64, int max_batched = 256,
                                     int block_size = 16) {
    ExecutorOptions eo;
    eo.num_threads = 1;  // per rank: two ranks on two cores
    eo.tensor_parallel = kTensorParallel;
    eo.num_kv_blocks = num_blocks;
    eo.block_size = block_size;
    eo.max_num_tokens = max_batched;
    eo.max_num_logits = max_num_seqs;
    auto exec = MakeModelExecutor(*model_, eo);
    EXPECT_TRUE(exec.ok()) << exec.status();
    EXPECT_NE((*exec)->Describe().find("x2 loopback"), std::string::npos) << (*exec)->Describe();
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

  static EngineRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
    EngineRequest r;
    r.prompt_ids = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return r;
  }

  std::unique_ptr<LoadedModel> model_;
};

TEST_F(EngineTpTest, BusyEngineGivesTheGreedyTokensOfOneRankAlone) {
  std::mt19937 rng(11);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 24; ++i) {
    reqs.push_back(Greedy(RandomPrompt(rng, 5 + static_cast<int>(rng() % 60)),
                          8 + static_cast<int>(rng() % 40)));
  }
  auto engine = MakeEngine(/*num_blocks=*/512, /*max_num_seqs=*/16, /*max_batched=*/64);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const EngineRequest& r : reqs) streams.push_back(*engine->Submit(r));
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Result got = Collect(*streams[i], 1);
    testing::SingleSequenceRunner alone(*model_);
    EXPECT_EQ(got.ids[0], alone.Greedy(reqs[i].prompt_ids, reqs[i].sampling.max_tokens))
        << "request " << i;
    EXPECT_EQ(got.reasons[0], FinishReason::kLength);
  }
  EXPECT_TRUE(engine->WaitUntilIdle(10));
  EXPECT_EQ(engine->stats().kv.num_used_blocks, 0);
}

TEST_F(EngineTpTest, SharedPrefixIsComputedOnceOnEveryRank) {
  std::mt19937 rng(5);
  std::vector<int32_t> prefix = RandomPrompt(rng, 100);
  std::vector<int32_t> a = prefix, b = prefix;
  a.insert(a.end(), {40, 41, 42});
  b.insert(b.end(), {50, 51});
  auto engine = MakeEngine(256);
  Result first = Collect(**engine->Submit(Greedy(a, 10)), 1);
  Result second = Collect(**engine->Submit(Greedy(b, 10)), 1);
  ASSERT_TRUE(second.usage.has_value());
  EXPECT_EQ(second.usage->cached_tokens, 96);
  testing::SingleSequenceRunner alone(*model_);
  EXPECT_EQ(second.ids[0], alone.Greedy(b, 10));
  Result again = Collect(**engine->Submit(Greedy(a, 10)), 1);
  EXPECT_EQ(again.ids[0], first.ids[0]);
}

TEST_F(EngineTpTest, TinyKvBudgetPreemptsAndStillFinishesEveryRequest) {
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
  EXPECT_EQ(engine->stats().kv.num_used_blocks, 0);
}

TEST_F(EngineTpTest, RandomArrivalsCancellationsDeadlinesAndSamplesAllEndCleanly) {
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
      EXPECT_NE(fr, FinishReason::kError) << got.status;
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

TEST_F(EngineTpTest, SeededSamplingIsReproducible) {
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

TEST_F(EngineTpTest, ImpossibleRankCountsAreStartUpErrors) {
  ExecutorOptions eo;
  eo.num_kv_blocks = 16;
  eo.tensor_parallel = 3;  // stories260K has 8 heads
  const absl::Status three = MakeModelExecutor(*model_, eo).status();
  EXPECT_EQ(three.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(three.message().find("num_attention_heads 8"), std::string::npos) << three;
  EXPECT_NE(three.message().find("fit: 1, 2, 4"), std::string::npos) << three;
  eo.tensor_parallel = 0;
  EXPECT_EQ(MakeModelExecutor(*model_, eo).status().code(), absl::StatusCode::kInvalidArgument);
  eo.tensor_parallel = 2;
  eo.backend = "tpu";
  EXPECT_EQ(MakeModelExecutor(*model_, eo).status().code(), absl::StatusCode::kInvalidArgument);
#ifndef TOKENMILL_HAVE_CUDA
  eo.backend = "cuda";
  EXPECT_NE(MakeModelExecutor(*model_, eo).status().message().find("not available"),
            std::string::npos);
#endif
}

// The outside check: the binary's JSON ids at --tensor-parallel 2 and 4 equal those at 1.
TEST(EngineTpCliTest, GenerateJsonIdsMatchOneRank) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  const nlohmann::json golden = nlohmann::json::parse(
      testing::ReadFileOrDie(testing::TestdataPath("golden/stories260K_greedy.json")));
  const std::string model = testing::TestdataPath("models/stories260K/stories260K.gguf");
  for (const nlohmann::json& c : golden["cases"]) {
    std::vector<nlohmann::json> ids;
    for (const char* tp : {"1", "2", "4"}) {
      const testing::CommandResult r = testing::RunCommand(
          {testing::TokenmillBinary(), "generate", "--model", model, "--prompt",
           c["prompt"].get<std::string>(), "--temperature", "0", "--max-tokens", "32", "--output",
           "json", "--tensor-parallel", tp, "--kv-cache-blocks", "64"});
      ASSERT_EQ(r.exit_code, 0) << "tp " << tp << ": " << r.err;
      ids.push_back(nlohmann::json::parse(testing::LastLine(r.out))["ids"]);
    }
    EXPECT_EQ(ids[1], ids[0]) << c["id"];
    EXPECT_EQ(ids[2], ids[0]) << c["id"];
    EXPECT_EQ(ids[0].size(), 32u);
  }
}

}  // namespace
}  // namespace tokenmill
