// ModelConfig from GGUF metadata (general.architecture "llama" or "qwen2").
//
// llama.cpp's converter permutes the Q/K projection rows of llama files so that RoPE
// rotates interleaved pairs (2i, 2i+1): such files get rope.is_neox = false and their
// weights are used as stored. qwen2 files keep HF's half-split layout (is_neox = true).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/core/gguf.h"
#include "tokenmill/model/model_config.h"

namespace tokenmill {

// The general.architecture values tokenmill runs.
const std::vector<std::string>& SupportedGgufArchitectures();

// Reads the `<arch>.*` hyper-parameters and tokenizer ids, and derives from the tensor
// list what the metadata leaves implicit: tied embeddings (no output.weight), q/k/v bias,
// Llama-3 rope scaling stored as a rope_freqs.weight tensor. Errors name the file and key.
// The result is validated; `name` is the file's stem.
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf);

}  // namespace tokenmill
