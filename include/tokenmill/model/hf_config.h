// ModelConfig from a Hugging Face `config.json` (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM). RoPE uses HF's half-split (neox) layout for these checkpoints.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/model/model_config.h"

namespace tokenmill {

// The `architectures` values tokenmill runs.
const std::vector<std::string>& SupportedHfArchitectures();

// Parses `json_text`; `source` (the file path) names the file in every error. Missing
// optional fields take the defaults of the transformers class for that architecture.
// The result is validated (ModelConfig::Validate). `name` is left empty.
absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& source);

// Reads and parses the config.json at `path`; `name` becomes its directory's name.
absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path);

}  // namespace tokenmill
