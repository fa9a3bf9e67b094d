// Everything a command needs to serve one model: weights, tokenizer, chat template.
// Resolves `--model PATH|demo[:preset]` and an optional separate tokenizer path.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tokenmill/model/weights.h"
#include "tokenmill/tokenizer/chat_template.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {

struct ModelBundle {
  std::string name;  // what clients call the model (directory / file stem, or the spec)
  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<Tokenizer> tokenizer;      // null when the model ships none
  std::optional<ChatTemplate> chat_template;  // the model's own, when it has one
  std::optional<ChatTemplateSource> chat_template_source;
};

// Loads a model file/directory or builds a demo model. The tokenizer comes from
// `tokenizer_path` when given, else from the model itself (GGUF vocabulary, or the
// tokenizer files beside config.json), else the byte tokenizer for demo models. A model
// without a tokenizer loads (ids in, ids out); a malformed tokenizer is an error.
absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& model_spec,
                                            const std::string& tokenizer_path = "");

// Says plainly, once, on stderr that a model's weights are random (demo models).
void WarnIfRandomWeights(const ModelBundle& bundle);

}  // namespace tokenmill
