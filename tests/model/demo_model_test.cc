#include "tokenmill/model/demo_model.h"

#include <cmath>
#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<const TensorView*> AllTensors(const LoadedModel& m) {
  std::vector<const TensorView*> out = {&m.weights.tok_embd, &m.weights.output_norm,
                                        &m.weights.lm_head};
  for (const LayerWeights& l : m.weights.layers) {
    for (const TensorView* t :
         {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      out.push_back(t);
    }
  }
  return out;
}

TEST(DemoModelTest, DefaultIsSmallRandomAndByteTokenizerShaped) {
  auto m = BuildDemoModel("demo");
  ASSERT_TRUE(m.ok()) << m.status();
  const LoadedModel& model = **m;
  const ModelConfig& c = model.config;
  EXPECT_TRUE(c.is_random_weights);
  EXPECT_EQ(model.format, "demo");
  EXPECT_EQ(model.path, "demo");
  EXPECT_EQ(c.vocab_size, 258);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.intermediate_size, 768);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.bos_token_id, 256);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(257));
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_EQ(c.NumParameters(), 3280128);
  ASSERT_EQ(model.weights.layers.size(), 4u);
  EXPECT_EQ(model.weights.layers[3].wk.shape, (Shape{128, 256}));
  EXPECT_EQ(model.weights.layers[3].w_down.shape, (Shape{256, 768}));
  EXPECT_NE(model.weights.lm_head.data, model.weights.tok_embd.data);
  int64_t elements = 0;
  for (const TensorView* t : AllTensors(model)) elements += t->NumElements();
  EXPECT_EQ(elements, c.NumParameters());
}

TEST(DemoModelTest, WeightsLookLikeAnInitAndAreDistinctPerTensor) {
  auto m = BuildDemoModel("demo");
  ASSERT_TRUE(m.ok()) << m.status();
  const LoadedModel& model = **m;
  for (const TensorView* t : AllTensors(model)) {
    ASSERT_EQ(t->dtype, DType::kF32);
    const float* v = t->As<float>();
    if (t->shape.rank == 1) {  // norms
      for (int64_t i = 0; i < t->NumElements(); ++i) ASSERT_EQ(v[i], 1.0f);
      continue;
    }
    double sum = 0, sum_sq = 0, max_abs = 0;
    for (int64_t i = 0; i < t->NumElements(); ++i) {
      sum += v[i];
      sum_sq += static_cast<double>(v[i]) * v[i];
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(v[i])));
    }
    const double n = static_cast<double>(t->NumElements());
    EXPECT_NEAR(sum / n, 0.0, 0.001);
    EXPECT_NEAR(std::sqrt(sum_sq / n), 0.02, 0.0005);
    EXPECT_LT(max_abs, 0.0693);  // 0.02 * 2 * sqrt(3)
    EXPECT_GT(max_abs, 0.05);
  }
  const auto& l = model.weights.layers;
  EXPECT_NE(std::memcmp(l[0].wq.data, l[1].wq.data, l[0].wq.NumBytes()), 0);
  EXPECT_NE(std::memcmp(l[0].w_gate.data, l[0].w_up.data, l[0].w_up.NumBytes()), 0);
}

TEST(DemoModelTest, BuildsAreBitIdentical) {
  auto a = BuildDemoModel("demo");
  auto b = LoadModel("demo");
  ASSERT_TRUE(a.ok() && b.ok());
  const auto ta = AllTensors(**a), tb = AllTensors(**b);
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    ASSERT_EQ(ta[i]->NumBytes(), tb[i]->NumBytes());
    EXPECT_EQ(std::memcmp(ta[i]->data, tb[i]->data, ta[i]->NumBytes()), 0) << "tensor " << i;
  }
}

TEST(DemoModelTest, PresetsHaveRealShapes) {
  auto l8 = DemoConfig("demo:llama3-8b");
  ASSERT_TRUE(l8.ok()) << l8.status();
  EXPECT_EQ(l8->NumParameters(), 8030261248);  // Llama-3.1-8B
  EXPECT_EQ(l8->vocab_size, 128256);
  EXPECT_EQ(l8->head_dim, 128);
  EXPECT_EQ(l8->rope.scaling, RopeScalingType::kLlama3);
  EXPECT_EQ(l8->rope.factor, 8.0f);
  EXPECT_TRUE(l8->is_random_weights);
  auto l1 = DemoConfig("demo:llama3.2-1b");
  ASSERT_TRUE(l1.ok()) << l1.status();
  EXPECT_EQ(l1->NumParameters(), 1235814400);  // Llama-3.2-1B
  EXPECT_TRUE(l1->tie_word_embeddings);
  EXPECT_EQ(l1->head_dim, 64);
  EXPECT_EQ(l1->rope.factor, 32.0f);
  EXPECT_THAT(DemoPresets(), ElementsAre("demo", "demo:llama3.2-1b", "demo:llama3-8b"));
}

TEST(DemoModelTest, SpecsAndUnknownPresets) {
  EXPECT_TRUE(IsDemoSpec("demo"));
  EXPECT_TRUE(IsDemoSpec("demo:whatever"));
  EXPECT_FALSE(IsDemoSpec("demos"));
  EXPECT_FALSE(IsDemoSpec("models/demo.gguf"));
  auto bad = BuildDemoModel("demo:gpt5");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("unknown demo model 'demo:gpt5' (presets: demo, demo:llama3.2-1b, "
                        "demo:llama3-8b)"));
  EXPECT_FALSE(LoadModel("demo:gpt5").ok());
}

}  // namespace
}  // namespace tokenmill
