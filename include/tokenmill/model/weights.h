// Host views of a Llama-family model's weights, in their stored dtype, plus whatever
// keeps the bytes alive (memory maps or owned buffers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenmill/core/gguf.h"
#include "tokenmill/core/mapped_file.h"
#include "tokenmill/core/tensor.h"
#include "tokenmill/model/model_config.h"

namespace tokenmill {

// Matrices are [out_features, in_features] row-major (HF layout; GGUF's ne[0] = in).
// A bias/optional tensor that is absent has data == nullptr.
struct LayerWeights {
  // Norm weights and biases are always F32 after loading (the loader converts them).
  TensorView attn_norm;  // [hidden]
  TensorView wq, wk, wv, wo;
  TensorView bq, bk, bv;  // optional, [out] F32 after loading
  TensorView ffn_norm;
  TensorView w_gate, w_up, w_down;
};

struct ModelWeights {
  TensorView tok_embd;     // [vocab, hidden]
  TensorView output_norm;  // [hidden]
  TensorView lm_head;      // [vocab, hidden]; same bytes as tok_embd when tied
  std::vector<LayerWeights> layers;
};

// Everything a loader returns. Views stay valid while this object lives.
struct LoadedModel {
  ModelConfig config;
  ModelWeights weights;
  std::string path;    // what the user passed
  std::string format;  // "gguf", "safetensors", "demo"
  // safetensors: the checkpoint directory (tokenizer.json, generation_config.json...).
  std::string model_dir;
  // gguf: the parsed file, whose metadata also holds the tokenizer.
  std::shared_ptr<const GgufFile> gguf;
  std::vector<std::shared_ptr<MappedFile>> files;      // mmaps backing the views
  std::vector<std::unique_ptr<uint8_t[]>> owned;       // converted or generated tensors
};

}  // namespace tokenmill
