// What a bench client needs of a model it does not run: its tokenizer (prompts of exact
// lengths) and its context length (the longest request that fits), without its weights.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::loadgen {

struct ClientModel {
  std::string name;  // as `tokenmill serve` names it: file stem, directory name, or the spec
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<int> max_model_len;  // the model's context, when its config says
};

// `spec`: "demo[:preset]" (byte tokenizer), a GGUF file, or an HF model directory (or its
// config.json). `tokenizer_path` overrides the model's own tokenizer. Errors name the file;
// a model without a tokenizer is an error (prompts are built from it).
absl::StatusOr<ClientModel> LoadClientModel(const std::string& spec,
                                            const std::string& tokenizer_path = "");

}  // namespace tokenmill::loadgen
