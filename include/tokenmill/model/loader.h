// Loads a Llama-family model (config + weights) from disk, by mmap.
//
// `path` may be:
//   - a `.gguf` file (general.architecture llama or qwen2; F32, F16, BF16, Q8_0 weights);
//   - a Hugging Face checkpoint directory: config.json plus model.safetensors or
//     model.safetensors.index.json and its shards (F32, F16, BF16 weights);
//   - that directory's config.json, model.safetensors or *.index.json;
//   - a directory holding no config.json and exactly one .gguf file;
//   - a demo spec ("demo", "demo:<preset>", see demo_model.h), built in memory, unless a
//     file or directory of that name exists.
//
// Weight matrices and embeddings stay in the map in their stored dtype (no copy); norm
// weights and biases are converted to F32. Every tensor's shape is checked against the
// config. Errors (missing file or tensor, wrong shape, unsupported dtype or architecture,
// truncated or malformed file) name the file and the tensor or field; nothing crashes.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokenmill/model/weights.h"

namespace tokenmill {

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path);

// The parts of LoadModel, for callers that already hold an open file.
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadGgufModel(const std::string& gguf_path);
// `dir` holds config.json and the safetensors weights.
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadSafetensorsModel(const std::string& dir);

}  // namespace tokenmill
