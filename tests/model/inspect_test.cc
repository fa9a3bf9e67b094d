#include "tokenmill/model/inspect.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/model_writers.h"
#include "model/testing/temp_dir.h"
#include "testing/testdata.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::tokenmill::testing::MakeTinyModel;
using ::tokenmill::testing::ScopedTempDir;
using ::tokenmill::testing::TestdataPath;
using ::tokenmill::testing::TinyModelOptions;

TEST(InspectTest, DemoModelSaysRandomWeightsAndCountsEverything) {
  auto m = BuildDemoModel("demo");
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelSummary s = SummarizeModel(**m);
  EXPECT_TRUE(s.is_random_weights);
  EXPECT_EQ(s.num_parameters, 3280128);
  EXPECT_EQ(s.num_tensors, 3 + 4 * 9);
  ASSERT_EQ(s.dtypes.size(), 1u);
  EXPECT_EQ(s.dtypes[0].dtype, DType::kF32);
  EXPECT_EQ(s.dtypes[0].num_elements, 3280128);
  EXPECT_EQ(s.weight_bytes, 3280128u * 4);
  EXPECT_EQ(s.owned_bytes, s.weight_bytes);
  EXPECT_EQ(s.mapped_bytes, 0u);
  // 4 layers x (K + V) x 4 KV heads x 32 dims.
  EXPECT_EQ(s.kv_bytes_per_token_f32, 4u * 2 * 4 * 32 * 4);
  EXPECT_EQ(s.kv_bytes_per_token_f16, 4u * 2 * 4 * 32 * 2);
  EXPECT_EQ(s.context_tokens, 2048);
  EXPECT_EQ(s.full_context_bytes_f16, s.weight_bytes + 2048u * 2048);
  const std::string text = FormatModelSummary(s);
  EXPECT_THAT(text, StartsWith("RANDOM WEIGHTS"));
  EXPECT_THAT(text, HasSubstr("3.3M (3280128)"));
  EXPECT_THAT(text, HasSubstr("F32"));
  EXPECT_THAT(text, HasSubstr("8 heads, 4 KV heads (GQA 2:1), head_dim 32"));
  EXPECT_THAT(text, HasSubstr("2.00 KiB/token f16/bf16, 4.00 KiB/token f32"));
}

TEST(InspectTest, Stories260K) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  auto m = LoadModel(TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelSummary s = SummarizeModel(**m);
  EXPECT_FALSE(s.is_random_weights);
  EXPECT_EQ(s.format, "gguf");
  EXPECT_EQ(s.num_tensors, 48);
  EXPECT_EQ(s.weight_bytes, static_cast<uint64_t>(s.num_parameters) * 4);
  EXPECT_EQ(s.owned_bytes, 11u * 64 * 4);  // 11 norms converted; the rest is mapped
  EXPECT_EQ(s.mapped_bytes + s.owned_bytes, s.weight_bytes);
  EXPECT_EQ(s.file_bytes, 1185376u);
  EXPECT_EQ(s.kv_bytes_per_token_f16, 5u * 2 * 4 * 8 * 2);
  const std::string text = FormatModelSummary(s);
  EXPECT_THAT(text, Not(HasSubstr("RANDOM")));
  EXPECT_THAT(text, HasSubstr("stories260K (gguf, llama)"));
  EXPECT_THAT(text, HasSubstr("RoPE interleaved, theta 10000"));
  EXPECT_THAT(text, HasSubstr("separate from lm_head; bos 1, eos 2"));
}

TEST(InspectTest, MixedDTypesAndTiedEmbeddingsCountedOnce) {
  TinyModelOptions o;
  o.dtype = "Q8_0";
  o.tie_word_embeddings = true;
  o.architecture = "Qwen2ForCausalLM";
  ScopedTempDir dir;
  ASSERT_TRUE(WriteGgufModel(MakeTinyModel(o), dir.File("q8.gguf")).ok());
  auto m = LoadModel(dir.File("q8.gguf"));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelSummary s = SummarizeModel(**m);
  ASSERT_EQ(s.dtypes.size(), 2u);
  EXPECT_EQ(s.dtypes[0].dtype, DType::kQ8_0);
  EXPECT_EQ(s.dtypes[0].num_tensors, 1 + 2 * 7);  // embeddings once, 7 matrices per layer
  EXPECT_EQ(s.dtypes[1].dtype, DType::kF32);
  EXPECT_EQ(s.dtypes[1].num_tensors, 1 + 2 * 5);  // norms and q/k/v biases
  int64_t elements = 0;
  for (const DTypeUsage& u : s.dtypes) elements += u.num_elements;
  EXPECT_EQ(elements, s.num_parameters);
  EXPECT_EQ(s.dtypes[0].num_bytes, static_cast<uint64_t>(s.dtypes[0].num_elements) / 32 * 34);
  const std::string text = FormatModelSummary(s);
  EXPECT_THAT(text, HasSubstr("Q8_0"));
  EXPECT_THAT(text, HasSubstr("q/k/v bias"));
  EXPECT_THAT(text, HasSubstr("tied to lm_head"));
  EXPECT_THAT(text, HasSubstr("RoPE half-split (neox)"));
}

TEST(InspectTest, BigPresetMemoryFigures) {
  // Llama-3-8B shapes without building 16 GB of weights: the summary of the config alone.
  LoadedModel model;
  model.config = *DemoConfig("demo:llama3-8b");
  const ModelSummary s = SummarizeModel(model);
  EXPECT_EQ(s.kv_bytes_per_token_f16, 131072u);  // 32 layers x 2 x 8 heads x 128 x 2 bytes
  EXPECT_EQ(s.full_context_bytes_f16, uint64_t{131072} * 131072);
  EXPECT_THAT(FormatModelSummary(s), HasSubstr("llama3 scaling x8"));
}

TEST(InspectTest, FormatHelpers) {
  EXPECT_EQ(FormatBytes(640), "640 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(uint64_t{16} << 30), "16.00 GiB");
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatCount(292480), "292.5K");
  EXPECT_EQ(FormatCount(8030261248), "8.03B");
}

}  // namespace
}  // namespace tokenmill
