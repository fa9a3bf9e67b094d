// Tensor parallelism through the forward pass: N shards on N loopback ranks (threads, one
// CPU backend each) give the logits of one rank within 1e-5 relative (fp32), identical on
// every rank, and the same greedy tokens: on stories260K (llama.cpp's goldens), on every
// Hugging Face reference checkpoint (transformers' logits and tokens) and on synthetic
// checkpoints in every weight dtype with q/k/v biases and a vocabulary no rank count divides.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>
#include <thread>

#include "gtest/gtest.h"
#include "model/model_runner.h"
#include "model/testing/model_writers.h"
#include "model/testing/temp_dir.h"
#include "nlohmann/json.hpp"
#include "testing/testdata.h"
#include "tokenmill/model/loader.h"
#include "tokenmill/model/sharding.h"
#include "tokenmill/parallel/loopback.h"

namespace tokenmill {
namespace {

using json = nlohmann::json;
using testing::SingleSequenceRunner;

double RelativeError(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    den += double{want[i]} * want[i];
  }
  return std::sqrt(num / den);
}

// Worst relative error over rows of `vocab` logits.
double WorstRowError(const std::vector<float>& got, const std::vector<float>& want, int vocab) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t r = 0; r + vocab <= std::min(got.size(), want.size()); r += vocab) {
    worst = std::max(worst, RelativeError(got.data() + r, want.data() + r, vocab));
  }
  return worst;
}

// One sequence through N shards in lockstep, like SingleSequenceRunner on one rank.
class TensorParallelRunner {
 public:
  using BackendFactory = std::function<std::unique_ptr<Backend>()>;
  static std::unique_ptr<Backend> CpuBackend() { return MakeCpuBackend({.num_threads = 1}); }

  TensorParallelRunner(const LoadedModel& whole, int n, int max_tokens = 256, int block_size = 16,
                       const BackendFactory& make_backend = CpuBackend)
      : n_(n), block_size_(block_size) {
    group_ =
        std::move(LoopbackGroup::Create({.world_size = n, .timeout = absl::Seconds(60)})).value();
    const int num_blocks = (max_tokens + block_size - 1) / block_size + 1;
    for (int r = 0; r < n; ++r) {
      auto shard = ShardModel(whole, r, n);
      EXPECT_TRUE(shard.ok()) << shard.status();
      shards_.push_back(std::move(shard).value());
      backends_.push_back(make_backend());
      LlamaModelOptions o;
      o.max_num_tokens = max_tokens;
      o.max_num_logits = max_tokens;
      o.communicator = group_->rank(r);
      auto m = LlamaModel::Create(*shards_[r], backends_[r].get(), o);
      EXPECT_TRUE(m.ok()) << m.status();
      models_.push_back(std::move(m).value());
      EXPECT_TRUE(backends_[r]->AllocateKvCache(models_[r]->KvSpec(num_blocks, block_size)).ok());
    }
    table_.resize(num_blocks);
    std::iota(table_.rbegin(), table_.rend(), 0);
  }

  // Runs `plan` on every rank; returns rank 0's logits after checking that every rank
  // returned the same bits.
  std::vector<float> Forward(const BatchPlan& plan) {
    std::vector<std::vector<float>> logits(n_);
    std::vector<absl::Status> status(n_);
    std::vector<std::thread> threads;
    for (int r = 0; r < n_; ++r) {
      threads.emplace_back([&, r] { status[r] = models_[r]->Forward(plan, &logits[r]); });
    }
    for (std::thread& t : threads) t.join();
    for (int r = 0; r < n_; ++r) {
      EXPECT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
      EXPECT_TRUE(logits[r].size() == logits[0].size() &&
                  std::memcmp(logits[r].data(), logits[0].data(), logits[0].size() * 4) == 0)
          << "rank " << r << " logits differ from rank 0";
    }
    return logits[0];
  }

  std::vector<float> Feed(const std::vector<int32_t>& tokens, bool all_logits) {
    BatchPlan plan;
    BatchSequence seq;
    seq.num_query_tokens = static_cast<int32_t>(tokens.size());
    seq.context_len = num_cached_ + seq.num_query_tokens;
    seq.block_table.assign(table_.begin(),
                           table_.begin() + (seq.context_len + block_size_ - 1) / block_size_);
    for (size_t i = 0; i < tokens.size(); ++i) {
      plan.token_ids.push_back(tokens[i]);
      plan.positions.push_back(num_cached_ + static_cast<int32_t>(i));
      if (all_logits || i + 1 == tokens.size()) plan.logits_rows.push_back(static_cast<int32_t>(i));
    }
    plan.sequences.push_back(seq);
    num_cached_ += seq.num_query_tokens;
    return Forward(plan);
  }

  std::vector<int32_t> Greedy(const std::vector<int32_t>& prompt, int num_new) {
    std::vector<float> logits = Feed(prompt, false);
    std::vector<int32_t> out;
    for (int i = 0; i < num_new; ++i) {
      out.push_back(
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
      if (i + 1 < num_new) logits = Feed({out.back()}, false);
    }
    return out;
  }

  LoopbackGroup& group() { return *group_; }

 private:
  int n_;
  int block_size_;
  int num_cached_ = 0;
  std::unique_ptr<LoopbackGroup> group_;
  std::vector<std::unique_ptr<LoadedModel>> shards_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::unique_ptr<LlamaModel>> models_;
  std::vector<int32_t> table_;
};

TEST(TensorParallelTest, Stories260KMatchesOneRankAndLlamaCppGoldens) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json golden =
      json::parse(testing::ReadFileOrDie(testing::TestdataPath("golden/stories260K_greedy.json")));
  const int vocab = (*model)->config.vocab_size;
  for (int n : {2, 4}) {
    for (const json& c : golden["cases"]) {
      SCOPED_TRACE(::testing::Message() << "tp=" << n << " " << c["id"].get<std::string>());
      const auto prompt = c["prompt_token_ids"].get<std::vector<int32_t>>();
      const auto want = c["generated_token_ids"].get<std::vector<int32_t>>();
      SingleSequenceRunner one(**model);
      TensorParallelRunner tp(**model, n);
      EXPECT_LT(WorstRowError(tp.Feed(prompt, true), one.Feed(prompt, true), vocab), 1e-5);
      TensorParallelRunner greedy(**model, n);
      EXPECT_EQ(greedy.Greedy(prompt, static_cast<int>(want.size())), want);
    }
  }
}

class TensorParallelHfTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TensorParallelHfTest, LogitsAndGreedyMatchOneRankAndTransformers) {
  const std::string dir = testing::SourceDir() + "/tests/reference/hf/" + GetParam();
  ASSERT_TRUE(std::filesystem::exists(dir + "/reference.json")) << dir;
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const json ref = json::parse(testing::ReadFileOrDie(dir + "/reference.json"));
  const int vocab = (*model)->config.vocab_size;
  for (int n : {2, 4}) {
    ASSERT_TRUE(CheckShardable(**model, n).ok()) << GetParam() << " tp " << n;
    for (const json& seq : ref["sequences"]) {
      const auto ids = seq["input_ids"].get<std::vector<int32_t>>();
      SCOPED_TRACE(::testing::Message() << GetParam() << " tp=" << n << " length " << ids.size());
      SingleSequenceRunner one(**model);
      TensorParallelRunner tp(**model, n);
      const std::vector<float> got = tp.Feed(ids, true);
      EXPECT_LT(WorstRowError(got, one.Feed(ids, true), vocab), 1e-5);
      std::vector<float> want;
      for (const json& row : seq["logits"]) {
        const auto r = row.get<std::vector<float>>();
        want.insert(want.end(), r.begin(), r.end());
      }
      EXPECT_LT(WorstRowError(got, want, vocab), 1e-4);
      TensorParallelRunner greedy(**model, n);
      const auto want_cont = seq["greedy_continuation"].get<std::vector<int32_t>>();
      EXPECT_EQ(greedy.Greedy(ids, static_cast<int>(want_cont.size())), want_cont);
    }
  }
}

// Every committed checkpoint has 4 query heads and intermediate 128, so tp 2 and 4 apply
// to all; mistral_gqa (1 KV head) and tp 4 of the others replicate KV heads.
INSTANTIATE_TEST_SUITE_P(Checkpoints, TensorParallelHfTest,
                         ::testing::Values("llama3_gqa", "llama_linear_bf16", "llama_sharded_f16",
                                           "mistral_gqa", "qwen2_bias_tied"));

TEST(TensorParallelTest, EveryWeightDtypeWithBiasesAndAnUnevenVocabulary) {
  for (const char* dtype : {"F32", "F16", "BF16", "Q8_0"}) {
    testing::TinyModelOptions o;
    o.vocab_size = 67;
    o.hidden_size = 128;
    o.intermediate_size = 256;
    o.num_heads = 4;
    o.num_kv_heads = 2;
    o.attention_bias = true;
    o.dtype = dtype;
    testing::ScopedTempDir dir;
    ASSERT_TRUE(WriteGgufModel(testing::MakeTinyModel(o), dir.File("m.gguf")).ok());
    auto model = LoadModel(dir.File("m.gguf"));
    ASSERT_TRUE(model.ok()) << model.status();
    std::vector<int32_t> prompt(40);
    for (int i = 0; i < 40; ++i) prompt[i] = (i * 29 + 3) % o.vocab_size;
    for (int n : {2, 4}) {
      SCOPED_TRACE(::testing::Message() << dtype << " tp=" << n);
      SingleSequenceRunner one(**model);
      TensorParallelRunner tp(**model, n);
      EXPECT_LT(WorstRowError(tp.Feed(prompt, true), one.Feed(prompt, true), o.vocab_size), 1e-5);
      // Decode steps after the prefill, through the sharded KV cache.
      SingleSequenceRunner one_greedy(**model);
      TensorParallelRunner tp_greedy(**model, n);
      EXPECT_EQ(tp_greedy.Greedy(prompt, 12), one_greedy.Greedy(prompt, 12));
    }
  }
}

// The CPU backend under another name: the model cannot assume its tensors are host
// memory, so collectives go through CopyToHost / CopyFromHost as they do on a GPU.
class StagedCpuBackend final : public Backend {
 public:
  StagedCpuBackend() : b_(MakeCpuBackend({.num_threads = 1})) {}
  std::string_view Name() const override { return "staged-cpu"; }
  absl::StatusOr<TensorView> Allocate(DType d, Shape s) override { return b_->Allocate(d, s); }
  void Free(const TensorView& t) override { b_->Free(t); }
  absl::StatusOr<TensorView> UploadWeight(const TensorView& h) override {
    return b_->UploadWeight(h);
  }
  absl::Status AllocateKvCache(const KvCacheSpec& s) override { return b_->AllocateKvCache(s); }
  const KvCacheSpec& kv_cache_spec() const override { return b_->kv_cache_spec(); }
  void CopyToHost(const TensorView& src, void* dst) override {
    ++num_host_copies;
    b_->CopyToHost(src, dst);
  }
  void CopyFromHost(const void* src, TensorView dst) override {
    ++num_host_copies;
    b_->CopyFromHost(src, dst);
  }
  void CopyKvBlocks(std::span<const std::pair<int32_t, int32_t>> c) override {
    b_->CopyKvBlocks(c);
  }
  absl::Status PlanStep(const BatchPlan& p) override { return b_->PlanStep(p); }
  absl::Status Finish() override { return b_->Finish(); }
  void Embedding(const TensorView& t, TensorView o) override { b_->Embedding(t, o); }
  void RmsNorm(const TensorView& x, const TensorView& w, float e, TensorView o) override {
    b_->RmsNorm(x, w, e, o);
  }
  void AddRmsNorm(TensorView r, const TensorView& d, const TensorView& w, float e,
                  TensorView o) override {
    b_->AddRmsNorm(r, d, w, e, o);
  }
  void MatMul(const TensorView& x, const TensorView& w, const TensorView* b,
              TensorView o) override {
    b_->MatMul(x, w, b, o);
  }
  void Rope(TensorView q, TensorView k, int h, int kv, const RopeParams& p) override {
    b_->Rope(q, k, h, kv, p);
  }
  void WriteKv(int l, const TensorView& k, const TensorView& v) override { b_->WriteKv(l, k, v); }
  void Attention(int l, const TensorView& q, const AttentionParams& p, TensorView o) override {
    b_->Attention(l, q, p, o);
  }
  void SiluMul(const TensorView& g, const TensorView& u, TensorView o) override {
    b_->SiluMul(g, u, o);
  }
  void GatherLogitsRows(const TensorView& x, TensorView o) override { b_->GatherLogitsRows(x, o); }

  int num_host_copies = 0;

 private:
  std::unique_ptr<Backend> b_;
};

TEST(TensorParallelTest, BackendsWithoutHostTensorsStageCollectivesBitForBit) {
  auto model = LoadModel("demo");
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> prompt = {256, 72, 101, 108, 108, 111, 44, 32, 119};
  std::vector<StagedCpuBackend*> staged;
  TensorParallelRunner plain(**model, 2);
  TensorParallelRunner via_host(**model, 2, 256, 16, [&] {
    auto b = std::make_unique<StagedCpuBackend>();
    staged.push_back(b.get());
    return b;
  });
  const std::vector<float> a = plain.Feed(prompt, true);
  const std::vector<float> b = via_host.Feed(prompt, true);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // Two all-reduces per layer, each a copy out and a copy back, plus the logits.
  const int layers = (*model)->config.num_layers;
  for (const StagedCpuBackend* s : staged) EXPECT_EQ(s->num_host_copies, 4 * layers + 1);
}

TEST(TensorParallelTest, ShardsAndCommunicatorsMustMatch) {
  auto model = LoadModel("demo");
  ASSERT_TRUE(model.ok()) << model.status();
  auto backend = MakeCpuBackend({.num_threads = 1});
  auto group = std::move(LoopbackGroup::Create({.world_size = 2})).value();
  LlamaModelOptions o;
  o.max_num_tokens = o.max_num_logits = 8;
  o.communicator = group->rank(0);
  const absl::Status whole = LlamaModel::Create(**model, backend.get(), o).status();
  EXPECT_EQ(whole.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(whole.message().find("ShardModel"), std::string::npos) << whole;
  auto shard = ShardModel(**model, 1, 2);
  ASSERT_TRUE(shard.ok()) << shard.status();
  const absl::Status wrong_rank = LlamaModel::Create(**shard, backend.get(), o).status();
  EXPECT_NE(wrong_rank.message().find("shard 1 of 2"), std::string::npos) << wrong_rank;
  o.communicator = nullptr;
  EXPECT_FALSE(LlamaModel::Create(**shard, backend.get(), o).ok());
}

TEST(TensorParallelTest, AMissingRankFailsTheStepInsteadOfHanging) {
  auto model = LoadModel("demo");
  ASSERT_TRUE(model.ok()) << model.status();
  auto group =
      std::move(LoopbackGroup::Create({.world_size = 2, .timeout = absl::Milliseconds(200)}))
          .value();
  auto shard = ShardModel(**model, 0, 2);
  ASSERT_TRUE(shard.ok()) << shard.status();
  auto backend = MakeCpuBackend({.num_threads = 1});
  LlamaModelOptions o;
  o.max_num_tokens = o.max_num_logits = 8;
  o.communicator = group->rank(0);
  auto m = LlamaModel::Create(**shard, backend.get(), o);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(backend->AllocateKvCache((*m)->KvSpec(4, 16)).ok());
  BatchPlan plan;
  plan.token_ids = {1, 2, 3};
  plan.positions = {0, 1, 2};
  plan.sequences.push_back({0, 3, 3, {0}});
  plan.logits_rows = {2};
  std::vector<float> logits;
  // Rank 1 never runs: rank 0 gives up at its first all-reduce.
  const absl::Status s = (*m)->Forward(plan, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("rank(s) 1"), std::string::npos) << s;
  // The group stays broken: the next step fails at once.
  EXPECT_EQ((*m)->Forward(plan, &logits).code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace tokenmill
