// The forward pass against implementations we did not write: llama.cpp's greedy goldens
// for stories260K (GGUF, interleaved RoPE) and Hugging Face transformers' logits for tiny
// Llama (llama3 and linear RoPE scaling), Qwen2 (q/k/v bias, tied) and Mistral checkpoints
// (safetensors, half-split RoPE; F32, BF16 and sharded F16 weights).
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/model_runner.h"
#include "nlohmann/json.hpp"
#include "testing/testdata.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

using testing::SingleSequenceRunner;
using json = nlohmann::json;

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    den += double{want[i]} * want[i];
  }
  return std::sqrt(num / den);
}

json LoadGolden() {
  return json::parse(testing::ReadFileOrDie(testing::TestdataPath("golden/stories260K_greedy.json")));
}

TEST(LlamaModelGoldenTest, Stories260KGreedyMatchesLlamaCpp) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json golden = LoadGolden();
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["id"].get<std::string>());
    SingleSequenceRunner runner(**model);
    const auto prompt = c["prompt_token_ids"].get<std::vector<int32_t>>();
    const auto want = c["generated_token_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(runner.Greedy(prompt, static_cast<int>(want.size())), want);
  }
}

TEST(LlamaModelGoldenTest, Stories260KFirstLogitsMatchLlamaCpp) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json golden = LoadGolden();
  for (const json& c : golden["cases"]) {
    SingleSequenceRunner runner(**model);
    const auto want = c["first_position_logits_full"].get<std::vector<float>>();
    const std::vector<float> got =
        runner.Feed(c["prompt_token_ids"].get<std::vector<int32_t>>(), false);
    ASSERT_EQ(got.size(), want.size());
    // llama.cpp keeps its KV cache in f16, so agreement is to f16 rounding, not fp32.
    EXPECT_LT(RelativeError(got, want), 2e-3) << c["id"];
  }
}

TEST(LlamaModelGoldenTest, ChunkedPrefillEqualsWholePrefill) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto model = LoadModel(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const json c = LoadGolden()["cases"][0];
  auto prompt = c["prompt_token_ids"].get<std::vector<int32_t>>();
  const auto gen = c["generated_token_ids"].get<std::vector<int32_t>>();
  prompt.insert(prompt.end(), gen.begin(), gen.end());
  SingleSequenceRunner whole(**model), chunked(**model);
  const std::vector<float> a = whole.Feed(prompt, true);
  const std::vector<float> b = chunked.Feed(prompt, true, /*chunk=*/7);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_LT(RelativeError(b, a), 1e-6);
}

struct HfCase {
  const char* name;
};

class HfReferenceTest : public ::testing::TestWithParam<const char*> {};

TEST_P(HfReferenceTest, LogitsAndGreedyMatchTransformers) {
  const std::string dir = testing::SourceDir() + "/tests/reference/hf/" + GetParam();
  ASSERT_TRUE(std::filesystem::exists(dir + "/reference.json")) << dir;
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const json ref = json::parse(testing::ReadFileOrDie(dir + "/reference.json"));
  const int vocab = (*model)->config.vocab_size;
  for (const json& seq : ref["sequences"]) {
    const auto ids = seq["input_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE(::testing::Message() << GetParam() << " length " << ids.size());
    SingleSequenceRunner runner(**model);
    const std::vector<float> got = runner.Feed(ids, true);
    const auto& want_rows = seq["logits"];
    ASSERT_EQ(got.size(), want_rows.size() * vocab);
    for (size_t pos = 0; pos < want_rows.size(); ++pos) {
      const auto want = want_rows[pos].get<std::vector<float>>();
      const std::vector<float> row(got.begin() + pos * vocab, got.begin() + (pos + 1) * vocab);
      EXPECT_LT(RelativeError(row, want), 1e-4) << "position " << pos;
    }
    SingleSequenceRunner greedy(**model);
    const auto want_cont = seq["greedy_continuation"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy.Greedy(ids, static_cast<int>(want_cont.size())), want_cont);
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, HfReferenceTest,
                         ::testing::Values("llama3_gqa", "llama_linear_bf16", "llama_sharded_f16",
                                           "mistral_gqa", "qwen2_bias_tied"));

}  // namespace
}  // namespace tokenmill
