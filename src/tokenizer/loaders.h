// File-format loaders behind LoadTokenizer (load_tokenizer.cc). Each returns a
// ModelTokenizer; errors name the file and the field.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::tokenizer_internal {

// Whole file as text; NotFound naming the file.
absl::StatusOr<std::string> ReadFile(const std::string& path);
// Parsed JSON; InvalidArgument naming the file on a syntax error.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// HF tokenizer.json (+ tokenizer_config.json / generation_config.json from `dir` when
// present; `dir` may be empty).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const nlohmann::json& tokenizer_json,
                                                           const std::string& source,
                                                           const std::string& dir);
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJsonFile(const std::string& path);
// vocab.json + merges.txt in `dir` (GPT-2 layout, or Qwen2's when tokenizer_config.json
// names Qwen2Tokenizer).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadVocabMerges(const std::string& dir);
// Llama 3's tiktoken tokenizer.model ("base64 rank" lines).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTiktoken(const std::string& path);
bool LooksLikeTiktoken(const std::string& path);
// GGUF vocabulary (tokenizer.ggml.model "llama" or "gpt2").
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const std::string& path);

}  // namespace tokenmill::tokenizer_internal
