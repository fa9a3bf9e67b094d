#include "tokenmill/model/loader.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/gguf_writer.h"
#include "model/testing/model_writers.h"
#include "model/testing/temp_dir.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

using ::testing::HasSubstr;
using ::tokenmill::testing::EncodeTensor;
using ::tokenmill::testing::GgufTensorName;
using ::tokenmill::testing::MakeTinyModel;
using ::tokenmill::testing::ScopedTempDir;
using ::tokenmill::testing::TestdataPath;
using ::tokenmill::testing::TinyModel;
using ::tokenmill::testing::TinyModelOptions;
using ::tokenmill::testing::TinyTensor;
using ::tokenmill::testing::WriteBytes;
using ::tokenmill::testing::WriteGgufModel;
using ::tokenmill::testing::WriteHfCheckpoint;

constexpr char kStories[] = "models/stories260K/stories260K.gguf";
constexpr char kTinyRandom[] = "models/llama-2-tiny-random/llama-2-tiny-random.gguf";

// True when `t` points into one of the model's memory maps (used in place, not copied).
bool IsInMap(const LoadedModel& m, const TensorView& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (const auto& f : m.files) {
    if (p >= f->data() && p + t.NumBytes() <= f->data() + f->size()) return true;
  }
  return false;
}

std::vector<const TensorView*> Matrices(const LoadedModel& m) {
  std::vector<const TensorView*> out = {&m.weights.tok_embd, &m.weights.lm_head};
  for (const LayerWeights& l : m.weights.layers) {
    for (const TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      out.push_back(t);
    }
  }
  return out;
}

float ValueAt(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32:
      return t.As<float>()[i];
    case DType::kF16:
      return F16ToF32(t.As<uint16_t>()[i]);
    case DType::kBF16:
      return Bf16ToF32(t.As<uint16_t>()[i]);
    case DType::kQ8_0: {
      const uint8_t* block = static_cast<const uint8_t*>(t.data) + (i / 32) * kQ8_0BlockBytes;
      uint16_t d;
      std::memcpy(&d, block, 2);
      return F16ToF32(d) * static_cast<int8_t>(block[2 + i % 32]);
    }
    default:
      return NAN;
  }
}

TEST(LoaderTest, Stories260KUsesTheMapInPlace) {
  TM_REQUIRE_TESTDATA(kStories);
  auto m = LoadModel(TestdataPath(kStories));
  ASSERT_TRUE(m.ok()) << m.status();
  const LoadedModel& model = **m;
  EXPECT_EQ(model.format, "gguf");
  ASSERT_NE(model.gguf, nullptr);
  EXPECT_EQ(model.config.num_layers, 5);
  ASSERT_EQ(model.weights.layers.size(), 5u);
  EXPECT_EQ(model.weights.tok_embd.shape, (Shape{512, 64}));
  EXPECT_EQ(model.weights.layers[0].wk.shape, (Shape{32, 64}));
  EXPECT_EQ(model.weights.layers[4].w_down.shape, (Shape{64, 172}));
  EXPECT_NE(model.weights.lm_head.data, model.weights.tok_embd.data);  // stored separately
  EXPECT_EQ(model.weights.layers[0].bq.data, nullptr);
  for (const TensorView* t : Matrices(model)) {
    EXPECT_TRUE(IsInMap(model, *t));
    EXPECT_EQ(t->dtype, DType::kF32);
  }
  // Norms are converted copies holding the file's values.
  const TensorView& norm = model.weights.layers[2].ffn_norm;
  EXPECT_FALSE(IsInMap(model, norm));
  auto stored = model.gguf->Tensor("blk.2.ffn_norm.weight");
  ASSERT_TRUE(stored.ok());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(norm.As<float>()[i], stored->As<float>()[i]);
}

TEST(LoaderTest, TinyRandomLlama2KeepsF16) {
  TM_REQUIRE_TESTDATA(kTinyRandom);
  auto m = LoadModel(TestdataPath(kTinyRandom));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->weights.tok_embd.dtype, DType::kF16);
  EXPECT_EQ((*m)->weights.layers[0].wq.dtype, DType::kF16);
  EXPECT_EQ((*m)->weights.layers[0].attn_norm.dtype, DType::kF32);
  EXPECT_EQ((*m)->weights.lm_head.shape, (Shape{32000, 8}));
  for (const TensorView* t : Matrices(**m)) EXPECT_TRUE(IsInMap(**m, *t));
}

TEST(LoaderTest, DirectoryWithOneGgufAndErrorsForOtherPaths) {
  TM_REQUIRE_TESTDATA(kStories);
  auto dir = LoadModel(TestdataPath("models/llama-2-tiny-random"));
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->config.vocab_size, 32000);
  auto two = LoadModel(TestdataPath("models/stories260K"));  // two .gguf files: ambiguous
  ASSERT_FALSE(two.ok());
  EXPECT_THAT(two.status().message(), HasSubstr("not exactly one .gguf"));
  auto missing = LoadModel("/no/such/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/no/such/model.gguf"));
  auto other = LoadModel(TestdataPath("models/stories260K/tok512.bin"));
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.status().message(), HasSubstr("not a model"));
}

// The loaded value of every element equals the stored value rounded to the dtype.
void ExpectMatches(const TensorView& t, const TinyTensor& src, const std::string& dtype) {
  ASSERT_EQ(t.NumElements(), static_cast<int64_t>(src.values.size())) << src.name;
  const std::string bytes = EncodeTensor(src.values, dtype);
  TensorView expected = t;
  expected.data = const_cast<char*>(bytes.data());
  for (int64_t i = 0; i < t.NumElements(); ++i) {
    ASSERT_EQ(ValueAt(t, i), ValueAt(expected, i)) << src.name << "[" << i << "]";
  }
}

class HfLoaderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfLoaderTest, LoadsEveryDTypeInPlace) {
  TinyModelOptions o;
  o.dtype = GetParam();
  const TinyModel tiny = MakeTinyModel(o);
  ScopedTempDir dir;
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.path()).ok());
  auto m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  const LoadedModel& model = **m;
  EXPECT_EQ(model.format, "safetensors");
  EXPECT_EQ(model.model_dir, dir.path());
  EXPECT_TRUE(model.config.rope.is_neox);
  for (const TensorView* t : Matrices(model)) {
    EXPECT_EQ(t->dtype, *ParseDType(o.dtype));
    EXPECT_TRUE(IsInMap(model, *t));
  }
  TinyModel copy = tiny;
  ExpectMatches(model.weights.layers[1].wk, *copy.Find("model.layers.1.self_attn.k_proj.weight"),
                o.dtype);
  ExpectMatches(model.weights.lm_head, *copy.Find("lm_head.weight"), o.dtype);
  ExpectMatches(model.weights.layers[0].attn_norm,
                *copy.Find("model.layers.0.input_layernorm.weight"), "F32");
}

INSTANTIATE_TEST_SUITE_P(DTypes, HfLoaderTest, ::testing::Values("F32", "F16", "BF16"));

TEST(LoaderTest, HfNormsStoredInBf16AreConvertedToF32) {
  TinyModelOptions o;
  o.dtype = "BF16";
  TinyModel tiny = MakeTinyModel(o);
  tiny.Find("model.norm.weight")->dtype = "BF16";
  ScopedTempDir dir;
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.path()).ok());
  auto m = LoadModel(dir.File("config.json"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->weights.output_norm.dtype, DType::kF32);
  const float stored = Bf16ToF32(F32ToBf16(tiny.Find("model.norm.weight")->values[3]));
  EXPECT_EQ((*m)->weights.output_norm.As<float>()[3], stored);
}

TEST(LoaderTest, ShardedQwen2WithBiasesAndTiedEmbeddings) {
  TinyModelOptions o;
  o.architecture = "Qwen2ForCausalLM";
  o.tie_word_embeddings = true;
  const TinyModel tiny = MakeTinyModel(o);
  ScopedTempDir dir;
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.path(), /*num_shards=*/3).ok());
  ASSERT_TRUE(std::filesystem::exists(dir.File("model-00003-of-00003.safetensors")));
  for (const std::string& path : {dir.path(), dir.File("model.safetensors.index.json")}) {
    auto m = LoadModel(path);
    ASSERT_TRUE(m.ok()) << m.status();
    const LoadedModel& model = **m;
    EXPECT_EQ(model.files.size(), 3u);
    EXPECT_TRUE(model.config.attention_bias);
    EXPECT_TRUE(model.config.tie_word_embeddings);
    EXPECT_EQ(model.weights.lm_head.data, model.weights.tok_embd.data);
    TinyModel copy = tiny;
    ExpectMatches(model.weights.layers[1].bv, *copy.Find("model.layers.1.self_attn.v_proj.bias"),
                  "F32");
    EXPECT_EQ(model.weights.layers[0].bq.shape, (Shape{32}));
  }
}

TEST(LoaderTest, MissingLmHeadMeansTied) {
  TinyModel tiny = MakeTinyModel({});
  tiny.Remove("lm_head.weight");
  ScopedTempDir dir;
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.path()).ok());
  auto m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->config.tie_word_embeddings);
  EXPECT_EQ((*m)->weights.lm_head.data, (*m)->weights.tok_embd.data);
}

class GgufLoaderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufLoaderTest, LoadsEveryDTypeWithPermutedQK) {
  TinyModelOptions o;
  o.dtype = GetParam();
  o.tie_word_embeddings = true;
  const TinyModel tiny = MakeTinyModel(o);
  ScopedTempDir dir;
  ASSERT_TRUE(WriteGgufModel(tiny, dir.File("tiny.gguf")).ok());
  auto m = LoadModel(dir.File("tiny.gguf"));
  ASSERT_TRUE(m.ok()) << m.status();
  const LoadedModel& model = **m;
  EXPECT_FALSE(model.config.rope.is_neox);
  EXPECT_TRUE(model.config.tie_word_embeddings);
  EXPECT_EQ(model.weights.lm_head.data, model.weights.tok_embd.data);
  for (const TensorView* t : Matrices(model)) {
    EXPECT_EQ(t->dtype, *ParseDType(o.dtype));
    EXPECT_TRUE(IsInMap(model, *t));
  }
  TinyModel copy = tiny;
  ExpectMatches(model.weights.layers[1].wv, *copy.Find("model.layers.1.self_attn.v_proj.weight"),
                o.dtype);
  // Interleaved layout: GGUF row h*hd + 2i + p holds HF row h*hd + p*hd/2 + i.
  const TinyTensor& hf_k = *copy.Find("model.layers.0.self_attn.k_proj.weight");
  const int hd = 8, cols = 32;
  TinyTensor row_src{"k_row", {cols}, {}, "", ""};
  const int h = 1, i = 2, p = 1;
  row_src.values.assign(hf_k.values.begin() + (h * hd + p * hd / 2 + i) * cols,
                        hf_k.values.begin() + (h * hd + p * hd / 2 + i + 1) * cols);
  TensorView row = model.weights.layers[0].wk;
  row.shape = Shape{cols};
  row.data = static_cast<uint8_t*>(row.data) + DTypeBytes(row.dtype, (h * hd + 2 * i + p) * cols);
  ExpectMatches(row, row_src, o.dtype);
}

INSTANTIATE_TEST_SUITE_P(DTypes, GgufLoaderTest, ::testing::Values("F32", "F16", "BF16", "Q8_0"));

// Removing any required tensor is an error that names the file and that tensor.
TEST(LoaderTest, EveryMissingTensorIsNamed) {
  TinyModelOptions o;
  o.architecture = "Qwen2ForCausalLM";  // q/k/v biases are required too
  o.num_layers = 1;
  const TinyModel full = MakeTinyModel(o);
  ScopedTempDir dir;
  for (const TinyTensor& t : full.tensors) {
    if (t.name == "lm_head.weight") continue;  // optional: tied
    TinyModel tiny = full;
    tiny.Remove(t.name);
    const std::string hf_dir = dir.File("hf");
    std::filesystem::remove_all(hf_dir);
    ASSERT_TRUE(WriteHfCheckpoint(tiny, hf_dir).ok());
    auto hf = LoadModel(hf_dir);
    ASSERT_FALSE(hf.ok()) << t.name;
    EXPECT_THAT(hf.status().message(),
                HasSubstr("model.safetensors: tensor '" + t.name + "' not found"));
    ASSERT_TRUE(WriteGgufModel(tiny, dir.File("m.gguf")).ok());
    auto gguf = LoadModel(dir.File("m.gguf"));
    ASSERT_FALSE(gguf.ok()) << t.name;
    EXPECT_THAT(gguf.status().message(), HasSubstr(dir.File("m.gguf") + ": tensor '" +
                                                   GgufTensorName(t.name) + "' not found"));
  }
}

void ExpectLoadFails(const TinyModel& tiny, const std::string& needle_hf,
                     const std::string& needle_gguf) {
  ScopedTempDir dir;
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.path()).ok());
  auto hf = LoadModel(dir.path());
  ASSERT_FALSE(hf.ok()) << needle_hf;
  EXPECT_THAT(hf.status().message(), HasSubstr(dir.File("model.safetensors")));
  EXPECT_THAT(hf.status().message(), HasSubstr(needle_hf));
  if (needle_gguf.empty()) return;
  ASSERT_TRUE(WriteGgufModel(tiny, dir.File("m.gguf")).ok());
  auto gguf = LoadModel(dir.File("m.gguf"));
  ASSERT_FALSE(gguf.ok()) << needle_gguf;
  EXPECT_THAT(gguf.status().message(), HasSubstr(dir.File("m.gguf")));
  EXPECT_THAT(gguf.status().message(), HasSubstr(needle_gguf));
}

TEST(LoaderTest, WrongShapeNamesFileTensorAndBothShapes) {
  TinyModel tiny = MakeTinyModel({});
  TinyTensor* up = tiny.Find("model.layers.1.mlp.up_proj.weight");
  up->shape = {32, 64};  // transposed
  ExpectLoadFails(tiny,
                  "tensor 'model.layers.1.mlp.up_proj.weight' has shape [32, 64], expected "
                  "[64, 32]",
                  "tensor 'blk.1.ffn_up.weight' has shape [32, 64], expected [64, 32]");
  TinyModel norm = MakeTinyModel({});
  TinyTensor* n = norm.Find("model.norm.weight");
  n->shape = {31};
  n->values.resize(31);
  ExpectLoadFails(norm, "tensor 'model.norm.weight' has shape [31], expected [32]",
                  "tensor 'output_norm.weight' has shape [31], expected [32]");
}

TEST(LoaderTest, UnsupportedDTypesNameFileTensorAndDType) {
  TinyModel f64 = MakeTinyModel({});
  f64.Find("model.layers.0.mlp.down_proj.weight")->dtype = "F64";
  ExpectLoadFails(f64, "tensor 'model.layers.0.mlp.down_proj.weight' has unsupported dtype F64",
                  "tensor 'blk.0.ffn_down.weight' has unsupported dtype F64");
  TinyModel i32 = MakeTinyModel({});
  i32.Find("model.layers.0.self_attn.o_proj.weight")->dtype = "I32";
  ExpectLoadFails(i32, "tensor 'model.layers.0.self_attn.o_proj.weight' has dtype I32",
                  "tensor 'blk.0.attn_output.weight' has dtype I32");
  TinyModel q4k = MakeTinyModel({});
  TinyTensor* gate = q4k.Find("model.layers.1.mlp.gate_proj.weight");
  gate->shape = {64, 256};  // Q4_K rows hold 256-element super-blocks
  gate->dtype = "Q4_K";
  gate->raw_bytes = std::string(64 * 144, '\x01');
  ScopedTempDir dir;
  ASSERT_TRUE(WriteGgufModel(q4k, dir.File("q4k.gguf")).ok());
  auto m = LoadModel(dir.File("q4k.gguf"));
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr(dir.File("q4k.gguf") + ": tensor 'blk.1.ffn_gate.weight' has unsupported "
                                               "dtype Q4_K"));
}

TEST(LoaderTest, UnsupportedArchitectureAndBadConfig) {
  TinyModelOptions o;
  o.extra_config = {{"architectures", {"GemmaForCausalLM"}}};
  ScopedTempDir dir;
  ASSERT_TRUE(WriteHfCheckpoint(MakeTinyModel(o), dir.path()).ok());
  auto m = LoadModel(dir.path());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr(dir.File("config.json")));
  EXPECT_THAT(m.status().message(), HasSubstr("'GemmaForCausalLM' is not supported"));
  std::filesystem::remove(dir.File("model.safetensors"));
  ASSERT_TRUE(WriteBytes(dir.File("pytorch_model.bin"), "x").ok());
  auto no_weights = LoadModel(dir.path());
  ASSERT_FALSE(no_weights.ok());
  EXPECT_THAT(no_weights.status().message(), HasSubstr("PyTorch .bin"));
  ScopedTempDir empty;
  EXPECT_THAT(LoadModel(empty.path()).status().message(), HasSubstr("no config.json"));
}

// Every truncation of a model file fails to load, naming the file; none crashes.
TEST(LoaderTest, TruncatedFilesAreErrors) {
  const TinyModel tiny = MakeTinyModel({});
  ScopedTempDir dir;
  ASSERT_TRUE(WriteGgufModel(tiny, dir.File("full.gguf")).ok());
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.File("hf")).ok());
  for (const std::string& full_path : {dir.File("full.gguf"), dir.File("hf/model.safetensors")}) {
    const std::string full = ::tokenmill::testing::ReadFileOrDie(full_path);
    const bool is_gguf = full_path.ends_with(".gguf");
    const std::string path = is_gguf ? dir.File("cut.gguf") : dir.File("hf/model.safetensors");
    for (size_t n = 0; n < full.size(); n += (n < 2048 ? 1 : 509)) {
      ASSERT_TRUE(WriteBytes(path, full.substr(0, n)).ok());
      auto m = LoadModel(is_gguf ? path : dir.File("hf"));
      ASSERT_FALSE(m.ok()) << full_path << " cut at " << n;
      EXPECT_THAT(m.status().message(), HasSubstr(path));
    }
  }
}

// Random corruption of a small model's GGUF header, safetensors header or config.json:
// whatever happens (an error, or a model whose shapes all match its config), no crash.
TEST(LoaderTest, RandomCorruptionNeverCrashes) {
  TinyModelOptions o;
  o.num_layers = 1;
  o.vocab_size = 40;
  const TinyModel tiny = MakeTinyModel(o);
  ScopedTempDir dir;
  ASSERT_TRUE(WriteGgufModel(tiny, dir.File("good.gguf")).ok());
  ASSERT_TRUE(WriteHfCheckpoint(tiny, dir.File("hf")).ok());
  const std::string gguf = ::tokenmill::testing::ReadFileOrDie(dir.File("good.gguf"));
  const std::string st = ::tokenmill::testing::ReadFileOrDie(dir.File("hf/model.safetensors"));
  const std::string config = ::tokenmill::testing::ReadFileOrDie(dir.File("hf/config.json"));
  uint64_t st_header = 0;
  std::memcpy(&st_header, st.data(), 8);
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\",:0123456789-.eE ntrufalsF";
  int num_ok = 0;
  for (int iter = 0; iter < 600; ++iter) {
    const int target = iter % 3;
    std::string bytes = target == 0 ? gguf : target == 1 ? st : config;
    const size_t region = target == 0 ? 1200 : target == 1 ? 8 + st_header : bytes.size();
    for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i) {
      const size_t pos = rng() % std::min(region, bytes.size());
      bytes[pos] =
          target == 0 || pos < 8 ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    }
    std::string path = dir.File("bad.gguf");
    if (target == 0) {
      ASSERT_TRUE(WriteBytes(path, bytes).ok());
    } else {  // one corrupted file next to an intact one
      path = dir.File("hf");
      ASSERT_TRUE(WriteBytes(dir.File("hf/model.safetensors"), target == 1 ? bytes : st).ok());
      ASSERT_TRUE(WriteBytes(dir.File("hf/config.json"), target == 2 ? bytes : config).ok());
    }
    auto m = LoadModel(path);
    if (!m.ok()) {
      EXPECT_THAT(m.status().message(), HasSubstr(path));
      continue;
    }
    ++num_ok;
    EXPECT_TRUE((*m)->config.Validate().ok());
    const auto& w = (*m)->weights;
    EXPECT_EQ(w.tok_embd.shape, (Shape{(*m)->config.vocab_size, (*m)->config.hidden_size}));
    EXPECT_EQ(w.layers.size(), static_cast<size_t>((*m)->config.num_layers));
  }
  EXPECT_GT(num_ok, 10);  // many corruptions hit values, not structure
}

}  // namespace
}  // namespace tokenmill
