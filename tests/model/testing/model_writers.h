// Tiny Llama-family checkpoints synthesized at test time, in both formats tokenmill
// reads: a Hugging Face directory (config.json + safetensors, optionally sharded) and a
// llama.cpp-style GGUF file. The same TinyModel written both ways describes the same
// network: the GGUF writer permutes Q/K rows exactly like llama.cpp's converter, so a
// correct forward pass gives the same logits for both.
//
// Tests edit a TinyModel before writing it (drop a tensor, change a shape or dtype) to
// produce the broken checkpoints they need.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace tokenmill::testing {

struct TinyModelOptions {
  std::string architecture = "LlamaForCausalLM";  // or MistralForCausalLM, Qwen2ForCausalLM
  int vocab_size = 64;
  int hidden_size = 32;
  int intermediate_size = 64;
  int num_layers = 2;
  int num_heads = 4;
  int num_kv_heads = 2;
  int head_dim = 0;  // 0: hidden_size / num_heads
  int max_position_embeddings = 256;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  // q/k/v biases (always on for Qwen2). HF Llama configs cannot express q/k/v-only
  // biases, so for Llama only the GGUF file carries them meaningfully.
  bool attention_bias = false;
  std::string dtype = "F32";  // weight-matrix dtype: F32, F16, BF16; Q8_0 (GGUF only)
  uint32_t seed = 1;
  float init_std = 0.1f;
  nlohmann::json extra_config = nlohmann::json::object();  // merged into config.json
};

struct TinyTensor {
  std::string name;            // Hugging Face name, e.g. model.layers.0.self_attn.q_proj.weight
  std::vector<int64_t> shape;  // row-major
  std::vector<float> values;   // what the tensor holds (before dtype rounding)
  std::string dtype;           // "" = the model's dtype (matrices) or F32 (norms, biases)
  std::string raw_bytes;       // when set, written as-is instead of `values`
};

struct TinyModel {
  TinyModelOptions options;
  std::vector<TinyTensor> tensors;

  TinyTensor* Find(const std::string& name);
  void Remove(const std::string& name);
};

// Deterministic random weights (normal, options.init_std; norms around 1).
TinyModel MakeTinyModel(const TinyModelOptions& options);

// The config.json that describes `model`.
nlohmann::json HfConfigJson(const TinyModel& model);

// Writes config.json and model.safetensors (num_shards == 1) or
// model-0000i-of-0000n.safetensors + model.safetensors.index.json into `dir`.
absl::Status WriteHfCheckpoint(const TinyModel& model, const std::string& dir, int num_shards = 1);

// Writes a GGUF v3 file with llama.cpp tensor names, llama (or qwen2) metadata and a
// small placeholder vocabulary. Q/K rows are permuted for llama's interleaved RoPE.
absl::Status WriteGgufModel(const TinyModel& model, const std::string& path);

// GGUF name of a Hugging Face tensor name ("" when it has none).
std::string GgufTensorName(const std::string& hf_name);

// Bytes of `values` in `dtype` (F32, F16, BF16, Q8_0, F64, I32, I8), as a file stores them.
std::string EncodeTensor(const std::vector<float>& values, const std::string& dtype);

}  // namespace tokenmill::testing
