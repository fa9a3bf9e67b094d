// The engine at tensor parallelism 2 (loopback ranks on the CPU backend), with the
// randomized workloads of engine_test.cc: batch invariance against a one-rank run, prefix
// caching, preemption under a tiny KV budget, random arrivals with cancellations and
// deadlines, seeded sampling. Then the executor's start-up errors, the binary
// (`generate --output json --tensor-parallel 2` prints the ids of --tensor-parallel 1),
// the model's refusal of device communicators a backend cannot order, and on machines with
// two GPUs (label gpu, scripts/gpu-check.sh): NCCL ranks on the CUDA backend against one.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/step_wire.h"
#include "gtest/gtest.h"
#include "model/model_runner.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"
#include "tokenmill/engine/engine.h"
#include "tokenmill/model/loader.h"
#include "tokenmill/model/sharding.h"
#ifdef TOKENMILL_HAVE_CUDA
#include "tokenmill/backend/cuda_backend.h"
#endif

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

// A communicator of device memory whose stream no CPU backend has: the model must refuse
// it at creation (device collectives must be ordered on the backend's stream).
class FakeDeviceCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  MemorySpace memory_space() const override { return MemorySpace::kDevice; }
  absl::Status AllReduceSum(float*, int64_t) override { return absl::OkStatus(); }
  absl::Status AllGather(const float*, int64_t, float*) override { return absl::OkStatus(); }
  absl::Status Broadcast(void*, int64_t, int) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
  absl::Status status() const override { return absl::OkStatus(); }
  void* stream() const override { return const_cast<int*>(&stream_); }

 private:
  int stream_ = 0;
};

TEST_F(EngineTpTest, DeviceCommunicatorsNeedABackendThatOrdersThem) {
  auto shard = ShardModel(*model_, 0, 2);
  ASSERT_TRUE(shard.ok()) << shard.status();
  auto backend = MakeCpuBackend({.num_threads = 1});
  FakeDeviceCommunicator nccl_like;
  LlamaModelOptions o;
  o.max_num_tokens = o.max_num_logits = 8;
  o.communicator = &nccl_like;
  const absl::Status s = LlamaModel::Create(**shard, backend.get(), o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("takes host communicators"), std::string::npos) << s;
  // The backend hook refuses them too, rather than treating device pointers as host ones.
  EXPECT_EQ(backend->device_stream(), nullptr);
}

TEST_F(EngineTpTest, CudaRanksNeedOneGpuEach) {
#ifdef TOKENMILL_HAVE_CUDA
  if (CudaDeviceCount() >= 4) GTEST_SKIP() << "enough GPUs for every rank count that fits";
  ExecutorOptions eo;
  eo.backend = "cuda";
  eo.num_kv_blocks = 16;
  eo.tensor_parallel = 4;  // fits stories260K, and exceeds this machine's GPUs
  const absl::Status s = MakeModelExecutor(*model_, eo).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("GPUs (one per rank)"), std::string::npos) << s;
#else
  GTEST_SKIP() << "built without CUDA";
#endif
}

#ifdef TOKENMILL_HAVE_CUDA
// Three sequences through `exec`: one prefill step, then `decode_steps` decode steps fed
// `forced` tokens when given (so that two executors see the same inputs) or their own
// argmax. Returns every step's logits; *tokens gets the argmax tokens fed back.
std::vector<std::vector<float>> RunBatch(ModelExecutor& exec, int vocab, int decode_steps,
                                         const std::vector<int32_t>* forced,
                                         std::vector<int32_t>* tokens) {
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 403, 407, 261, 378}, {1, 20, 30, 40, 50, 60, 70, 80, 90}, {1, 99}};
  const int seqs = static_cast<int>(prompts.size());
  const int blocks_per_seq = 8;  // 128 tokens each
  std::vector<int32_t> len(seqs);
  std::vector<std::vector<float>> out;
  std::vector<int32_t> next(seqs);
  for (int step = 0; step <= decode_steps; ++step) {
    BatchPlan plan;
    for (int i = 0; i < seqs; ++i) {
      const std::vector<int32_t> feed = step == 0 ? prompts[i] : std::vector<int32_t>{next[i]};
      BatchSequence s;
      s.query_start = plan.num_tokens();
      s.num_query_tokens = static_cast<int32_t>(feed.size());
      s.context_len = len[i] + s.num_query_tokens;
      for (int b = 0; b < blocks_per_seq; ++b) s.block_table.push_back(i * blocks_per_seq + b);
      for (size_t t = 0; t < feed.size(); ++t) {
        plan.token_ids.push_back(feed[t]);
        plan.positions.push_back(len[i] + static_cast<int32_t>(t));
      }
      plan.logits_rows.push_back(s.query_start + s.num_query_tokens - 1);
      len[i] = s.context_len;
      plan.sequences.push_back(std::move(s));
    }
    std::vector<float> logits;
    const absl::Status st = exec.Execute(plan, {}, &logits);
    EXPECT_TRUE(st.ok()) << "step " << step << ": " << st;
    if (!st.ok()) return out;
    for (int i = 0; i < seqs; ++i) {
      const float* row = logits.data() + static_cast<size_t>(i) * vocab;
      const int32_t argmax = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      tokens->push_back(argmax);
      next[i] = forced != nullptr ? (*forced)[tokens->size() - 1] : argmax;
    }
    out.push_back(std::move(logits));
  }
  return out;
}

// Two GPUs: NCCL collectives on each backend's stream (decode steps replayed from CUDA
// graphs with the collectives inside) give the logits of one GPU.
TEST_F(EngineTpTest, NcclRanksOnTwoGpusMatchOneGpu) {
  if (CudaDeviceCount() < 2) GTEST_SKIP() << "needs 2 GPUs (" << CudaDeviceCount() << " here)";
  ExecutorOptions eo;
  eo.backend = "cuda";
  eo.num_kv_blocks = 32;
  eo.max_num_tokens = 64;
  eo.max_num_logits = 8;
  auto one = MakeModelExecutor(*model_, eo);
  ASSERT_TRUE(one.ok()) << one.status();
  eo.tensor_parallel = 2;
  auto two = MakeModelExecutor(*model_, eo);
  ASSERT_TRUE(two.ok()) << two.status();
#ifdef TOKENMILL_HAVE_NCCL
  EXPECT_NE((*two)->Describe().find("NCCL"), std::string::npos) << (*two)->Describe();
#endif
  const int vocab = model_->config.vocab_size;
  constexpr int kDecodeSteps = 12;  // the graph bucket is captured, then replayed
  std::vector<int32_t> tokens_one, tokens_two;
  const auto a = RunBatch(**one, vocab, kDecodeSteps, nullptr, &tokens_one);
  const auto b = RunBatch(**two, vocab, kDecodeSteps, &tokens_one, &tokens_two);
  ASSERT_EQ(a.size(), b.size());
  int same_argmax = 0;
  for (size_t step = 0; step < a.size(); ++step) {
    ASSERT_EQ(a[step].size(), b[step].size());
    for (size_t r = 0; r + vocab <= a[step].size(); r += vocab) {
      double num = 0, den = 0;
      for (int v = 0; v < vocab; ++v) {
        const double d = double{a[step][r + v]} - b[step][r + v];
        num += d * d;
        den += double{a[step][r + v]} * a[step][r + v];
      }
      // BF16 weights on both sides; only the order of the row-parallel sums differs.
      EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 2e-2) << "step " << step << " row " << r;
    }
  }
  for (size_t i = 0; i < tokens_one.size(); ++i) same_argmax += tokens_one[i] == tokens_two[i];
  EXPECT_GE(same_argmax, static_cast<int>(tokens_one.size()) - 1) << "greedy tokens diverged";
}
#endif  // TOKENMILL_HAVE_CUDA

// What the leader of a multi-process group sends: steps and settings survive the trip,
// and garbage (a truncated message, another program's bytes) is DATA_LOSS, never a crash.
TEST(StepWireTest, StepsAndSettingsRoundTripAndGarbageIsRefused) {
  BatchPlan plan;
  plan.token_ids = {1, 5, 9, 7};
  plan.positions = {0, 1, 2, 40};
  plan.sequences.push_back({0, 3, 3, {4, 2}});
  plan.sequences.push_back({3, 1, 41, {0, 1, 3}});
  plan.logits_rows = {2, 3};
  const std::vector<BlockCopy> copies = {{7, 8}, {9, 10}};
  const std::string bytes = wire::EncodeStep(plan, copies);
  BatchPlan got;
  std::vector<std::pair<int32_t, int32_t>> got_copies;
  ASSERT_TRUE(wire::DecodeStep(bytes, &got, &got_copies).ok());
  EXPECT_EQ(got.token_ids, plan.token_ids);
  EXPECT_EQ(got.positions, plan.positions);
  ASSERT_EQ(got.sequences.size(), 2u);
  EXPECT_EQ(got.sequences[1].context_len, 41);
  EXPECT_EQ(got.sequences[1].block_table, plan.sequences[1].block_table);
  EXPECT_EQ(got.logits_rows, plan.logits_rows);
  EXPECT_EQ(got_copies, (std::vector<std::pair<int32_t, int32_t>>{{7, 8}, {9, 10}}));
  for (size_t cut : {size_t{0}, size_t{3}, bytes.size() / 2, bytes.size() - 1}) {
    EXPECT_EQ(wire::DecodeStep(bytes.substr(0, cut), &got, &got_copies).code(),
              absl::StatusCode::kDataLoss)
        << cut;
  }
  EXPECT_EQ(wire::DecodeStep(bytes + "x", &got, &got_copies).code(), absl::StatusCode::kDataLoss);
  std::mt19937 rng(3);
  for (int i = 0; i < 200; ++i) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    (void)wire::DecodeStep(junk, &got, &got_copies);  // must not crash or allocate wildly
  }
  char header[wire::kHeaderBytes];
  wire::EncodeHeader({wire::MessageType::kStep, 12345}, header);
  auto h = wire::DecodeHeader(header);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, wire::MessageType::kStep);
  EXPECT_EQ(h->payload_bytes, 12345);
  header[0] ^= 1;
  EXPECT_EQ(wire::DecodeHeader(header).status().code(), absl::StatusCode::kDataLoss);
  wire::GroupConfig c{"cuda", true, std::string(128, '\x01'), 100, 16, 2048, 256, "m"};
  auto back = wire::DecodeGroupConfig(wire::EncodeGroupConfig(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->nccl_unique_id, c.nccl_unique_id);
  EXPECT_EQ(back->num_kv_blocks, 100);
  EXPECT_EQ(back->max_num_logits, 256);
}

TEST_F(EngineTpTest, ModelFingerprintsTellCheckpointsApart) {
  auto demo = LoadModel("demo");
  ASSERT_TRUE(demo.ok()) << demo.status();
  auto again = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(wire::ModelFingerprint(**again), wire::ModelFingerprint(*model_));
  EXPECT_NE(wire::ModelFingerprint(**demo), wire::ModelFingerprint(*model_));
  EXPECT_NE(wire::ModelFingerprint(*model_).find("stories260K"), std::string::npos);
}

}  // namespace
}  // namespace tokenmill
