// The Llama graph (src/model) unchanged on the CUDA backend, end to end: llama.cpp's
// greedy goldens for stories260K and Hugging Face transformers' logits for the tiny
// reference checkpoints, in the exact configuration (F32 weights and caches, generic
// attention); stories260K's goldens again with every case decoding at once (ragged
// batches whose size shrinks as cases finish, replayed from CUDA graphs); and the
// production configuration (BF16 weights and cache) against the golden logits.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "backend/cuda_test_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/testdata.h"
#include "tokenmill/model/llama_model.h"
#include "tokenmill/model/loader.h"

namespace tokenmill::testing {
namespace {

using json = nlohmann::json;

CudaBackendOptions ExactOptions() {
  CudaBackendOptions o;
  o.weight_dtype = DType::kF32;
  o.f32_kv_cache_dtype = DType::kF32;
  o.use_fast_attention = false;
  return o;
}

double RelErr(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    den += double{want[i]} * want[i];
  }
  return std::sqrt(num / den);
}

int32_t Argmax(const float* row, int vocab) {
  return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
}

// Drives a LlamaModel on a CUDA backend for a set of sequences; sequence i owns blocks
// i, i + n, i + 2n, ... (interleaved, so block tables really matter).
class CudaRunner {
 public:
  CudaRunner(const LoadedModel& model, const CudaBackendOptions& options, int num_seqs,
             int max_tokens = 512)
      : num_seqs_(num_seqs), context_(num_seqs, 0) {
    auto b = MakeCudaBackend(options);
    EXPECT_TRUE(b.ok()) << b.status();
    backend_ = std::move(b).value();
    LlamaModelOptions opts;
    opts.max_num_tokens = max_tokens;
    opts.max_num_logits = max_tokens;
    auto m = LlamaModel::Create(model, backend_.get(), opts);
    EXPECT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    blocks_per_seq_ = (max_tokens + kBlockSize - 1) / kBlockSize;
    EXPECT_TRUE(backend_->AllocateKvCache(model_->KvSpec(blocks_per_seq_ * num_seqs, kBlockSize)).ok());
  }

  // One step: feeds[i] = tokens for sequence i (empty: not in the step). Returns the
  // logits of every fed token (all_logits) or of each fed sequence's last token.
  std::vector<float> Step(const std::vector<std::vector<int32_t>>& feeds, bool all_logits) {
    BatchPlan plan;
    for (int s = 0; s < num_seqs_; ++s) {
      if (feeds[s].empty()) continue;
      BatchSequence seq;
      seq.query_start = plan.num_tokens();
      seq.num_query_tokens = static_cast<int32_t>(feeds[s].size());
      seq.context_len = context_[s] + seq.num_query_tokens;
      for (int b = 0; b * kBlockSize < seq.context_len; ++b) {
        seq.block_table.push_back(s + b * num_seqs_);
      }
      for (size_t j = 0; j < feeds[s].size(); ++j) {
        plan.token_ids.push_back(feeds[s][j]);
        plan.positions.push_back(context_[s] + static_cast<int32_t>(j));
        if (all_logits || j + 1 == feeds[s].size()) plan.logits_rows.push_back(plan.num_tokens() - 1);
      }
      context_[s] = seq.context_len;
      plan.sequences.push_back(std::move(seq));
    }
    std::vector<float> logits;
    const absl::Status s = model_->Forward(plan, &logits);
    EXPECT_TRUE(s.ok()) << s;
    return logits;
  }

  // Greedy continuations of every prompt, all sequences decoding together; sequence i
  // stops after lengths[i] tokens.
  std::vector<std::vector<int32_t>> GreedyAll(const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<int>& lengths) {
    const int vocab = model_->config().vocab_size;
    std::vector<std::vector<int32_t>> out(num_seqs_);
    std::vector<float> logits = Step(prompts, false);
    for (;;) {
      std::vector<std::vector<int32_t>> feeds(num_seqs_);
      int row = 0;
      bool any = false;
      for (int s = 0; s < num_seqs_; ++s) {
        if (static_cast<int>(out[s].size()) >= lengths[s] || (out[s].empty() && prompts[s].empty())) {
          continue;
        }
        // This sequence was in the last step, so it owns the next logits row.
        const int32_t next = Argmax(logits.data() + static_cast<size_t>(row++) * vocab, vocab);
        out[s].push_back(next);
        if (static_cast<int>(out[s].size()) < lengths[s]) {
          feeds[s] = {next};
          any = true;
        }
      }
      if (!any) break;
      logits = Step(feeds, false);
    }
    return out;
  }

  Backend& backend() { return *backend_; }

 private:
  static constexpr int kBlockSize = 16;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  int num_seqs_;
  int blocks_per_seq_ = 0;
  std::vector<int32_t> context_;
};

json StoriesGolden() {
  return json::parse(ReadFileOrDie(TestdataPath("golden/stories260K_greedy.json")));
}

TEST(CudaModelTest, Stories260KGreedyMatchesLlamaCppOneByOne) {
  TM_REQUIRE_GPU();
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json golden = StoriesGolden();  // a temporary's ["cases"] would dangle in the range-for
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["id"].get<std::string>());
    CudaRunner runner(**model, ExactOptions(), 1);
    const auto want = c["generated_token_ids"].get<std::vector<int32_t>>();
    const auto got = runner.GreedyAll({c["prompt_token_ids"].get<std::vector<int32_t>>()},
                                      {static_cast<int>(want.size())});
    EXPECT_EQ(got[0], want);
  }
}

TEST(CudaModelTest, Stories260KGreedyMatchesLlamaCppAllAtOnceWithGraphs) {
  TM_REQUIRE_GPU();
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json cases = StoriesGolden()["cases"];
  std::vector<std::vector<int32_t>> prompts, want;
  std::vector<int> lengths;
  for (const json& c : cases) {
    prompts.push_back(c["prompt_token_ids"].get<std::vector<int32_t>>());
    want.push_back(c["generated_token_ids"].get<std::vector<int32_t>>());
    lengths.push_back(static_cast<int>(want.back().size()));
  }
  CudaRunner runner(**model, ExactOptions(), static_cast<int>(prompts.size()));
  EXPECT_EQ(runner.GreedyAll(prompts, lengths), want);
  const absl::StatusOr<CudaGraphStats> stats = GetCudaGraphStats(runner.backend());
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->replays, 0);
}

TEST(CudaModelTest, Stories260KBf16ConfigurationKeepsTheLogits) {
  TM_REQUIRE_GPU();
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json golden = StoriesGolden();  // a temporary's ["cases"] would dangle in the range-for
  for (const json& c : golden["cases"]) {
    CudaRunner runner(**model, CudaBackendOptions{}, 1);
    const auto want = c["first_position_logits_full"].get<std::vector<float>>();
    const std::vector<float> got = runner.Step({c["prompt_token_ids"].get<std::vector<int32_t>>()}, false);
    ASSERT_EQ(got.size(), want.size());
    // BF16 weights, activations into the GEMMs and KV cache, through 5 layers.
    EXPECT_LT(RelErr(got, want), 3e-2) << c["id"];
  }
}

class CudaHfReferenceTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaHfReferenceTest, LogitsAndGreedyMatchTransformers) {
  TM_REQUIRE_GPU();
  const std::string dir = SourceDir() + "/tests/reference/hf/" + GetParam();
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const json ref = json::parse(ReadFileOrDie(dir + "/reference.json"));
  const int vocab = (*model)->config.vocab_size;
  for (const json& seq : ref["sequences"]) {
    const auto ids = seq["input_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE(::testing::Message() << GetParam() << " length " << ids.size());
    CudaRunner runner(**model, ExactOptions(), 1);
    const std::vector<float> got = runner.Step({ids}, true);
    const auto& want_rows = seq["logits"];
    ASSERT_EQ(got.size(), want_rows.size() * vocab);
    for (size_t pos = 0; pos < want_rows.size(); ++pos) {
      const std::vector<float> row(got.begin() + pos * vocab, got.begin() + (pos + 1) * vocab);
      EXPECT_LT(RelErr(row, want_rows[pos].get<std::vector<float>>()), 1e-4) << "position " << pos;
    }
    CudaRunner greedy(**model, ExactOptions(), 1);
    const auto want = seq["greedy_continuation"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy.GreedyAll({ids}, {static_cast<int>(want.size())})[0], want);
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaHfReferenceTest,
                         ::testing::Values("llama3_gqa", "llama_linear_bf16", "llama_sharded_f16",
                                           "mistral_gqa", "qwen2_bias_tied"));

}  // namespace
}  // namespace tokenmill::testing
