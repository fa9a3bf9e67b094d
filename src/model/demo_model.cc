#include "tokenmill/model/demo_model.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

constexpr uint64_t kDemoSeed = 0x746f6b656e6d696cULL;  // "tokenmil"
constexpr float kInitStd = 0.02f;                      // HF initializer_range
constexpr int64_t kChunkElems = int64_t{1} << 20;
constexpr int kByteBos = 256;
constexpr int kByteEos = 257;

ModelConfig BaseConfig(const char* name) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.name = name;
  c.rms_norm_eps = 1e-5f;
  c.bos_token_id = kByteBos;
  c.eos_token_ids = {kByteEos};
  c.is_random_weights = true;
  c.rope.is_neox = true;
  return c;
}

void SetHeads(ModelConfig& c, int num_heads, int num_kv_heads) {
  c.num_heads = num_heads;
  c.num_kv_heads = num_kv_heads;
  c.head_dim = c.hidden_size / num_heads;
  c.rope.head_dim = c.head_dim;
  c.rope.rotary_dim = c.head_dim;
}

void SetLlama3Rope(ModelConfig& c, float factor) {
  c.rope.theta = 500000.0f;
  c.rope.scaling = RopeScalingType::kLlama3;
  c.rope.factor = factor;
  c.rope.low_freq_factor = 1.0f;
  c.rope.high_freq_factor = 4.0f;
  c.rope.original_max_position_embeddings = 8192;
  c.max_position_embeddings = 131072;
}

ModelConfig SmallDemo() {
  ModelConfig c = BaseConfig("demo");
  c.vocab_size = 258;
  c.hidden_size = 256;
  c.intermediate_size = 768;
  c.num_layers = 4;
  SetHeads(c, 8, 4);
  c.max_position_embeddings = 2048;
  c.rope.theta = 10000.0f;
  return c;
}

ModelConfig Llama32_1B() {
  ModelConfig c = BaseConfig("demo:llama3.2-1b");
  c.vocab_size = 128256;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_layers = 16;
  SetHeads(c, 32, 8);
  c.tie_word_embeddings = true;
  SetLlama3Rope(c, 32.0f);
  return c;
}

ModelConfig Llama3_8B() {
  ModelConfig c = BaseConfig("demo:llama3-8b");
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  SetHeads(c, 32, 8);
  SetLlama3Rope(c, 8.0f);
  return c;
}

struct Preset {
  const char* spec;
  ModelConfig (*config)();
  DType dtype;
};

constexpr Preset kPresets[] = {
    {"demo", SmallDemo, DType::kF32},
    {"demo:llama3.2-1b", Llama32_1B, DType::kBF16},
    {"demo:llama3-8b", Llama3_8B, DType::kBF16},
};

absl::StatusOr<const Preset*> FindPreset(std::string_view spec) {
  for (const Preset& p : kPresets) {
    if (spec == p.spec) return &p;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown demo model '", std::string(spec),
                                                 "' (presets: ", absl::StrJoin(DemoPresets(), ", "),
                                                 ")"));
}

// splitmix64's output function: a bijective mixer, so (stream, index) pairs never collide.
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Sum of four 16-bit uniforms, standardised: mean 0, variance 1, within +-3.46. One hash
// per value keeps generating 8B parameters in the tens of seconds.
float StandardNormalish(uint64_t stream, int64_t index) {
  const uint64_t x = Mix(stream + static_cast<uint64_t>(index) * 0x9e3779b97f4a7c15ULL);
  const int64_t sum =
      static_cast<int64_t>((x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48));
  return static_cast<float>(sum - 131070) * (1.0f / 37837.23f);
}

struct Chunk {
  TensorView tensor;
  uint64_t stream;
  int64_t begin, end;
};

void FillChunk(const Chunk& c) {
  if (c.tensor.dtype == DType::kF32) {
    float* out = c.tensor.As<float>();
    for (int64_t i = c.begin; i < c.end; ++i) out[i] = kInitStd * StandardNormalish(c.stream, i);
  } else {
    uint16_t* out = c.tensor.As<uint16_t>();
    for (int64_t i = c.begin; i < c.end; ++i) {
      out[i] = F32ToBf16(kInitStd * StandardNormalish(c.stream, i));
    }
  }
}

// Fills every chunk on all cores; the values do not depend on the thread count.
void FillParallel(const std::vector<Chunk>& chunks) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < chunks.size(); i = next++) FillChunk(chunks[i]);
  };
  const size_t num_threads =
      std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), chunks.size());
  std::vector<std::thread> threads;
  for (size_t t = 1; t < num_threads; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
}

class DemoBuilder {
 public:
  DemoBuilder(LoadedModel* model, DType dtype) : model_(model), dtype_(dtype) {}

  // A random [rows, cols] matrix (allocated now, filled by Finish()).
  TensorView Matrix(int64_t rows, int64_t cols) {
    TensorView t = Allocate(dtype_, Shape{rows, cols});
    const uint64_t stream = Mix(kDemoSeed + ++num_tensors_);
    for (int64_t b = 0; b < t.NumElements(); b += kChunkElems) {
      chunks_.push_back({t, stream, b, std::min(t.NumElements(), b + kChunkElems)});
    }
    return t;
  }
  TensorView Ones(int64_t n) {
    TensorView t = Allocate(DType::kF32, Shape{n});
    std::fill_n(t.As<float>(), n, 1.0f);
    return t;
  }
  void Finish() { FillParallel(chunks_); }

 private:
  TensorView Allocate(DType dtype, Shape shape) {
    TensorView t;
    t.dtype = dtype;
    t.shape = shape;
    // Default-initialised: pages are touched once, by the filling thread.
    model_->owned.emplace_back(new uint8_t[t.NumBytes()]);
    t.data = model_->owned.back().get();
    return t;
  }

  LoadedModel* model_;
  DType dtype_;
  int num_tensors_ = 0;
  std::vector<Chunk> chunks_;
};

}  // namespace

bool IsDemoSpec(std::string_view spec) { return spec == "demo" || spec.starts_with("demo:"); }

const std::vector<std::string>& DemoPresets() {
  static const std::vector<std::string> kSpecs = [] {
    std::vector<std::string> v;
    for (const Preset& p : kPresets) v.push_back(p.spec);
    return v;
  }();
  return kSpecs;
}

absl::StatusOr<ModelConfig> DemoConfig(std::string_view spec) {
  TM_ASSIGN_OR_RETURN(const Preset* preset, FindPreset(spec));
  ModelConfig c = preset->config();
  TM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<std::unique_ptr<LoadedModel>> BuildDemoModel(std::string_view spec) {
  const auto start = std::chrono::steady_clock::now();
  TM_ASSIGN_OR_RETURN(const Preset* preset, FindPreset(spec));
  auto model = std::make_unique<LoadedModel>();
  TM_ASSIGN_OR_RETURN(model->config, DemoConfig(spec));
  model->path = std::string(spec);
  model->format = "demo";
  const ModelConfig& c = model->config;
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  DemoBuilder b(model.get(), preset->dtype);
  ModelWeights& w = model->weights;
  w.tok_embd = b.Matrix(c.vocab_size, hidden);
  w.output_norm = b.Ones(hidden);
  w.lm_head = c.tie_word_embeddings ? w.tok_embd : b.Matrix(c.vocab_size, hidden);
  w.layers.resize(c.num_layers);
  for (LayerWeights& l : w.layers) {
    l.attn_norm = b.Ones(hidden);
    l.wq = b.Matrix(q_dim, hidden);
    l.wk = b.Matrix(kv_dim, hidden);
    l.wv = b.Matrix(kv_dim, hidden);
    l.wo = b.Matrix(hidden, q_dim);
    l.ffn_norm = b.Ones(hidden);
    l.w_gate = b.Matrix(c.intermediate_size, hidden);
    l.w_up = b.Matrix(c.intermediate_size, hidden);
    l.w_down = b.Matrix(hidden, c.intermediate_size);
  }
  b.Finish();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  spdlog::info("built {} with RANDOM WEIGHTS ({:.1f}M parameters, {}) in {} ms", spec,
               c.NumParameters() / 1e6, DTypeName(preset->dtype), ms);
  return model;
}

}  // namespace tokenmill
