#include <cmath>
#include <numbers>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/gguf_writer.h"
#include "model/testing/temp_dir.h"
#include "testing/testdata.h"
#include "tokenmill/model/gguf_config.h"
#include "tokenmill/model/hf_config.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::tokenmill::testing::GgufWriter;
using ::tokenmill::testing::ScopedTempDir;
using ::tokenmill::testing::TestdataPath;

// ---------------------------------------------------------------- HF config.json

TEST(HfConfigTest, RealConfigsAndPublishedParameterCounts) {
  TM_REQUIRE_TESTDATA("tokenizers/qwen2.5-0.5b-instruct/config.json");
  struct Case {
    const char* dir;
    const char* architecture;
    int64_t num_parameters;  // from the model cards / safetensors metadata
  };
  for (const Case& c : {Case{"qwen2.5-0.5b-instruct", "Qwen2ForCausalLM", 494032768},
                        Case{"tinyllama-1.1b-chat-v1.0", "LlamaForCausalLM", 1100048384},
                        Case{"smollm2-135m-instruct", "LlamaForCausalLM", 134515008},
                        Case{"mistral-7b-instruct-v0.3", "MistralForCausalLM", 7248023552}}) {
    auto cfg = LoadHfConfig(TestdataPath(std::string("tokenizers/") + c.dir + "/config.json"));
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    EXPECT_EQ(cfg->architecture, c.architecture);
    EXPECT_EQ(cfg->name, c.dir);
    EXPECT_EQ(cfg->NumParameters(), c.num_parameters) << c.dir;
    EXPECT_TRUE(cfg->rope.is_neox);
  }
  auto qwen = LoadHfConfig(TestdataPath("tokenizers/qwen2.5-0.5b-instruct/config.json"));
  EXPECT_EQ(qwen->hidden_size, 896);
  EXPECT_EQ(qwen->num_kv_heads, 2);
  EXPECT_EQ(qwen->head_dim, 64);
  EXPECT_TRUE(qwen->attention_bias);
  EXPECT_TRUE(qwen->tie_word_embeddings);
  EXPECT_EQ(qwen->sliding_window, 0);  // use_sliding_window: false
  EXPECT_EQ(qwen->rope.theta, 1e6f);
  EXPECT_FLOAT_EQ(qwen->rms_norm_eps, 1e-6f);
  EXPECT_EQ(qwen->bos_token_id, 151643);
  EXPECT_THAT(qwen->eos_token_ids, ElementsAre(151645));
  auto mistral = LoadHfConfig(TestdataPath("tokenizers/mistral-7b-instruct-v0.3/config.json"));
  EXPECT_EQ(mistral->sliding_window, 0);  // "sliding_window": null
  EXPECT_EQ(mistral->num_kv_heads, 8);
  EXPECT_FALSE(mistral->attention_bias);
  EXPECT_EQ(mistral->max_position_embeddings, 32768);
}

constexpr char kLlama31[] = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
  "tie_word_embeddings": false, "vocab_size": 128256, "hidden_act": "silu"})";

TEST(HfConfigTest, Llama31WithLlama3RopeScaling) {
  auto c = ParseHfConfig(kLlama31, "llama31/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->rope.head_dim, 128);
  EXPECT_EQ(c->rope.rotary_dim, 128);
  EXPECT_EQ(c->rope.theta, 500000.0f);
  EXPECT_EQ(c->rope.scaling, RopeScalingType::kLlama3);
  EXPECT_EQ(c->rope.factor, 8.0f);
  EXPECT_EQ(c->rope.low_freq_factor, 1.0f);
  EXPECT_EQ(c->rope.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(c->NumParameters(), 8030261248);  // Llama-3.1-8B
}

std::string Llama(const std::string& extra) {
  return R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)" +
         (extra.empty() ? std::string() : ", " + extra) + "}";
}

TEST(HfConfigTest, DefaultsFollowTransformers) {
  auto c = ParseHfConfig(Llama(""), "c.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-6f);
  EXPECT_EQ(c->rope.theta, 10000.0f);
  EXPECT_EQ(c->rope.scaling, RopeScalingType::kNone);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);  // LlamaConfig's defaults when config.json names none
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  auto none = ParseHfConfig(Llama(R"("bos_token_id": null, "eos_token_id": 7)"), "c.json");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->bos_token_id, -1);
  EXPECT_THAT(none->eos_token_ids, ElementsAre(7));
  auto by_type = ParseHfConfig(
      R"({"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})",
      "q.json");
  ASSERT_TRUE(by_type.ok()) << by_type.status();
  EXPECT_EQ(by_type->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(by_type->vocab_size, 151936);
  EXPECT_EQ(by_type->max_position_embeddings, 32768);
}

TEST(HfConfigTest, LinearScalingLegacyKeyHeadDimAndRopeParameters) {
  auto linear = ParseHfConfig(Llama(R"("rope_scaling": {"type": "linear", "factor": 4})"), "c");
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ(linear->rope.scaling, RopeScalingType::kLinear);
  EXPECT_EQ(linear->rope.factor, 4.0f);
  auto dflt = ParseHfConfig(Llama(R"("rope_scaling": {"rope_type": "default"})"), "c");
  ASSERT_TRUE(dflt.ok()) << dflt.status();
  EXPECT_EQ(dflt->rope.scaling, RopeScalingType::kNone);
  auto head_dim = ParseHfConfig(Llama(R"("head_dim": 32, "num_key_value_heads": 2)"), "c");
  ASSERT_TRUE(head_dim.ok()) << head_dim.status();
  EXPECT_EQ(head_dim->head_dim, 32);
  EXPECT_EQ(head_dim->rope.rotary_dim, 32);
  // transformers >= 5 writes rope_parameters instead of rope_theta / rope_scaling.
  auto v5 = ParseHfConfig(Llama(R"("rope_parameters": {"rope_theta": 500000.0, "rope_type":
      "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192})"),
                          "c");
  ASSERT_TRUE(v5.ok()) << v5.status();
  EXPECT_EQ(v5->rope.theta, 500000.0f);
  EXPECT_EQ(v5->rope.scaling, RopeScalingType::kLlama3);
  EXPECT_EQ(v5->rope.factor, 32.0f);
}

TEST(HfConfigTest, SlidingWindowPerArchitecture) {
  const std::string dims = R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                              "num_attention_heads": 4, "vocab_size": 100)";
  auto mistral01 = ParseHfConfig(
      R"({"architectures": ["MistralForCausalLM"], "sliding_window": 4096, )" + dims + "}", "m");
  ASSERT_TRUE(mistral01.ok()) << mistral01.status();
  EXPECT_EQ(mistral01->sliding_window, 4096);
  auto qwen_all = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window":
      true, "sliding_window": 256, "max_window_layers": 0, )" +
                                    dims + "}",
                                "q");
  ASSERT_TRUE(qwen_all.ok()) << qwen_all.status();
  EXPECT_EQ(qwen_all->sliding_window, 256);
  auto qwen_none = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window":
      true, "sliding_window": 256, "max_window_layers": 2, )" +
                                     dims + "}",
                                 "q");
  ASSERT_TRUE(qwen_none.ok()) << qwen_none.status();
  EXPECT_EQ(qwen_none->sliding_window, 0);
  auto qwen_mixed = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window":
      true, "sliding_window": 256, "max_window_layers": 1, )" +
                                      dims + "}",
                                  "q.json");
  ASSERT_FALSE(qwen_mixed.ok());
  EXPECT_THAT(qwen_mixed.status().message(), HasSubstr("q.json: field 'max_window_layers'"));
  auto llama = ParseHfConfig(Llama(R"("sliding_window": 16)"), "c");
  EXPECT_EQ(llama->sliding_window, 0);
}

void ExpectConfigError(const std::string& json, const std::string& needle) {
  auto c = ParseHfConfig(json, "/models/x/config.json");
  ASSERT_FALSE(c.ok()) << "expected an error containing: " << needle;
  EXPECT_THAT(c.status().message(), HasSubstr("/models/x/config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr(needle));
}

TEST(HfConfigTest, ClearErrors) {
  ExpectConfigError("{", "not valid JSON");
  ExpectConfigError("[1]", "not a JSON object");
  ExpectConfigError(R"({"architectures": ["GPT2LMHeadModel"]})",
                    "architecture 'GPT2LMHeadModel' is not supported (supported: "
                    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  ExpectConfigError(R"({"hidden_size": 4})", "'(none given)' is not supported");
  ExpectConfigError(R"({"architectures": ["LlamaForCausalLM"]})",
                    "field 'hidden_size' is required");
  ExpectConfigError(Llama(R"("num_key_value_heads": "two")"),
                    "field 'num_key_value_heads' must be an integer, got \"two\"");
  ExpectConfigError(Llama(R"("num_key_value_heads": 1.5)"), "must be an integer");
  ExpectConfigError(Llama(R"("num_key_value_heads": 3)"),
                    "num_attention_heads (4) is not a multiple of num_key_value_heads (3)");
  ExpectConfigError(Llama(R"("rms_norm_eps": "x")"), "field 'rms_norm_eps' must be a number");
  ExpectConfigError(Llama(R"("tie_word_embeddings": 1)"), "must be true or false");
  ExpectConfigError(Llama(R"("rope_scaling": {"rope_type": "yarn", "factor": 4})"),
                    "rope_scaling type 'yarn' is not supported (supported: linear, llama3)");
  ExpectConfigError(Llama(R"("rope_scaling": {"rope_type": "llama3", "factor": 8})"),
                    "rope_scaling.low_freq_factor' is required");
  ExpectConfigError(Llama(R"("rope_scaling": {"type": "linear"})"), "rope_scaling.factor");
  ExpectConfigError(Llama(R"("rope_scaling": 3)"), "rope_scaling must be an object");
  ExpectConfigError(Llama(R"("attention_bias": true)"), "field 'attention_bias' = true");
  ExpectConfigError(Llama(R"("mlp_bias": true)"), "field 'mlp_bias'");
  ExpectConfigError(Llama(R"("hidden_act": "gelu")"), "hidden_act");
  ExpectConfigError(Llama(R"("num_attention_heads": 0)"), "num_attention_heads");
  ExpectConfigError(Llama(R"("num_attention_heads": 5)"), "does not divide hidden_size 64");
  ExpectConfigError(Llama(R"("vocab_size": -3)"), "vocab_size = -3 is out of range");
  ExpectConfigError(Llama(R"("hidden_size": 99999999999)"),
                    "field 'hidden_size' must be an integer");
  ExpectConfigError(Llama(R"("eos_token_id": 100)"), "eos_token_id 100 is outside the vocabulary");
  ExpectConfigError(Llama(R"("rope_theta": -1)"), "rope_theta");
}

TEST(HfConfigTest, LoadNamesMissingFile) {
  auto c = LoadHfConfig("/nonexistent/dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/dir/config.json"));
}

// ---------------------------------------------------------------- GGUF metadata

TEST(GgufConfigTest, Stories260K) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  auto g = GgufFile::Open(TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(g.ok()) << g.status();
  auto c = ConfigFromGguf(**g);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->name, "stories260K");
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FALSE(c->rope.is_neox);  // interleaved: the converter permuted Q/K rows
  EXPECT_EQ(c->rope.rotary_dim, 8);
  EXPECT_EQ(c->rope.theta, 10000.0f);
  EXPECT_FALSE(c->tie_word_embeddings);  // the file stores output.weight explicitly
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  // 3 * 512*64 would be tied; 48 tensors of this file hold exactly these elements.
  int64_t elements = 0;
  for (const GgufTensorInfo& t : (*g)->tensors()) elements += t.shape.NumElements();
  EXPECT_EQ(c->NumParameters(), elements);
}

TEST(GgufConfigTest, TinyRandomLlama2) {
  TM_REQUIRE_TESTDATA("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
  auto g = GgufFile::Open(TestdataPath("models/llama-2-tiny-random/llama-2-tiny-random.gguf"));
  ASSERT_TRUE(g.ok()) << g.status();
  auto c = ConfigFromGguf(**g);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  int64_t elements = 0;
  for (const GgufTensorInfo& t : (*g)->tensors()) elements += t.shape.NumElements();
  EXPECT_EQ(c->NumParameters(), elements);
}

// Metadata of a small llama GGUF; tests add or override keys.
GgufWriter LlamaMetadata(const std::string& arch = "llama") {
  GgufWriter w;
  w.AddString("general.architecture", arch);
  w.AddU32(arch + ".embedding_length", 64);
  w.AddU32(arch + ".feed_forward_length", 128);
  w.AddU32(arch + ".block_count", 2);
  w.AddU32(arch + ".attention.head_count", 4);
  w.AddU32(arch + ".attention.head_count_kv", 2);
  w.AddU32(arch + ".context_length", 4096);
  w.AddF32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.AddStringArray("tokenizer.ggml.tokens", std::vector<std::string>(300, "t"));
  w.AddU32("tokenizer.ggml.bos_token_id", 1);
  w.AddU32("tokenizer.ggml.eos_token_id", 2);
  return w;
}

absl::StatusOr<ModelConfig> ConfigOf(const GgufWriter& w, ScopedTempDir& dir) {
  const std::string path = dir.File("m.gguf");
  EXPECT_TRUE(w.WriteFile(path).ok());
  TM_ASSIGN_OR_RETURN(auto g, GgufFile::Open(path));
  return ConfigFromGguf(*g);
}

std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

TEST(GgufConfigTest, DerivesTiedEmbeddingsBiasVocabAndEndTokens) {
  ScopedTempDir dir;
  GgufWriter w = LlamaMetadata();
  w.AddU32("tokenizer.ggml.eot_token_id", 7);
  w.AddU32("tokenizer.ggml.eom_token_id", 2);  // duplicate of eos: listed once
  w.AddU32("tokenizer.ggml.padding_token_id", 0xffffffffu);
  w.AddTensor("blk.0.attn_q.bias", ggml_type::kF32, {64}, F32Bytes(std::vector<float>(64)));
  auto c = ConfigOf(w, dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 300);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_TRUE(c->tie_word_embeddings);  // no output.weight
  EXPECT_TRUE(c->attention_bias);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2, 7));
  EXPECT_EQ(c->name, "m");

  GgufWriter q = LlamaMetadata("qwen2");
  q.AddU32("qwen2.vocab_size", 320);
  q.AddF32("qwen2.rope.freq_base", 1e6f);
  auto qc = ConfigOf(q, dir);
  ASSERT_TRUE(qc.ok()) << qc.status();
  EXPECT_EQ(qc->architecture, "qwen2");
  EXPECT_TRUE(qc->rope.is_neox);
  EXPECT_EQ(qc->vocab_size, 320);
  EXPECT_EQ(qc->rope.theta, 1e6f);
}

TEST(GgufConfigTest, LinearScalingAndKeyLength) {
  ScopedTempDir dir;
  GgufWriter w = LlamaMetadata();
  w.AddString("llama.rope.scaling.type", "linear");
  w.AddF32("llama.rope.scaling.factor", 2.0f);
  w.AddU32("llama.attention.key_length", 32);
  w.AddU32("llama.rope.dimension_count", 32);
  auto c = ConfigOf(w, dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.scaling, RopeScalingType::kLinear);
  EXPECT_EQ(c->rope.factor, 2.0f);
  EXPECT_EQ(c->head_dim, 32);
}

// HF's _compute_llama3_parameters, written out independently of the implementation.
std::vector<float> HfLlama3Factors(double theta, int dim, double factor, double original) {
  std::vector<float> out;
  for (int i = 0; i < dim; i += 2) {
    const double freq = 1.0 / std::pow(theta, static_cast<double>(i) / dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    double scaled = freq;
    if (wavelen > original / 1.0) {
      scaled = freq / factor;
    } else if (wavelen >= original / 4.0) {
      const double smooth = (original / wavelen - 1.0) / (4.0 - 1.0);
      scaled = (1 - smooth) * freq / factor + smooth * freq;
    }
    out.push_back(static_cast<float>(freq / scaled));
  }
  return out;
}

TEST(GgufConfigTest, Llama3ScalingFromRopeFreqsTensor) {
  ScopedTempDir dir;
  GgufWriter w = LlamaMetadata();
  w.AddF32("llama.rope.freq_base", 500000.0f);
  w.AddTensor("rope_freqs.weight", ggml_type::kF32, {8},
              F32Bytes(HfLlama3Factors(500000.0, 16, 32.0, 8192)));
  auto c = ConfigOf(w, dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.scaling, RopeScalingType::kLlama3);
  EXPECT_FLOAT_EQ(c->rope.factor, 32.0f);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->rope.low_freq_factor, 1.0f);
  EXPECT_EQ(c->rope.high_freq_factor, 4.0f);

  GgufWriter odd = LlamaMetadata();
  odd.AddTensor("rope_freqs.weight", ggml_type::kF32, {8}, F32Bytes({1, 1.5f, 1, 2, 3, 1, 1, 9}));
  auto bad = ConfigOf(odd, dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("rope_freqs.weight"));
}

void ExpectGgufConfigError(GgufWriter w, const std::string& needle) {
  ScopedTempDir dir;
  auto c = ConfigOf(w, dir);
  ASSERT_FALSE(c.ok()) << "expected an error containing: " << needle;
  EXPECT_THAT(c.status().message(), HasSubstr(dir.File("m.gguf")));
  EXPECT_THAT(c.status().message(), HasSubstr(needle));
}

TEST(GgufConfigTest, ClearErrors) {
  ExpectGgufConfigError(LlamaMetadata("gpt2"),
                        "GGUF architecture 'gpt2' is not supported (supported: llama, qwen2)");
  ExpectGgufConfigError(GgufWriter(), "no general.architecture");
  GgufWriter no_layers;
  no_layers.AddString("general.architecture", "llama");
  no_layers.AddU32("llama.embedding_length", 64);
  no_layers.AddU32("llama.feed_forward_length", 64);
  ExpectGgufConfigError(no_layers, "'llama.block_count' is required");
  GgufWriter partial = LlamaMetadata();
  partial.AddU32("llama.rope.dimension_count", 8);
  ExpectGgufConfigError(partial, "partial rotary");
  GgufWriter yarn = LlamaMetadata();
  yarn.AddString("llama.rope.scaling.type", "yarn");
  ExpectGgufConfigError(yarn, "rope.scaling.type 'yarn' is not supported");
  GgufWriter string_dims = LlamaMetadata();
  string_dims.AddString("llama.attention.head_count_kv", "two");
  ExpectGgufConfigError(string_dims, "'llama.attention.head_count_kv' is a string");
  GgufWriter bad_kv = LlamaMetadata();
  bad_kv.AddU32("llama.attention.head_count_kv", 3);
  ExpectGgufConfigError(bad_kv, "not a multiple of num_key_value_heads (3)");
  GgufWriter huge = LlamaMetadata();
  huge.AddU64("llama.block_count", uint64_t{1} << 40);
  ExpectGgufConfigError(huge, "out of range");
}

}  // namespace
}  // namespace tokenmill
