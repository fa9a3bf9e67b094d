#include "tokenmill/api/model_bundle.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace fs = std::filesystem;

namespace {

std::string DisplayName(const std::string& spec) {
  fs::path p(spec);
  if (p.filename() == "config.json") p = p.parent_path();
  std::string name = p.has_filename() ? p.filename().string() : p.parent_path().filename().string();
  if (p.extension() == ".gguf") name = p.stem().string();
  return name.empty() ? spec : name;
}

// The model's own tokenizer: the GGUF itself, or the directory holding config.json.
std::string TokenizerSourceOf(const std::string& spec) {
  fs::path p(spec);
  if (p.extension() == ".gguf") return spec;
  if (p.filename() == "config.json") return p.parent_path().string();
  return spec;
}

bool HasTokenizerFiles(const std::string& path) {
  if (fs::is_regular_file(path)) return true;  // GGUF or tokenizer.json
  for (const char* f : {"tokenizer.json", "vocab.json", "tokenizer.model"}) {
    if (fs::exists(fs::path(path) / f)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& spec,
                                            const std::string& tokenizer_path) {
  ModelBundle b;
  if (IsDemoSpec(spec)) {
    TM_ASSIGN_OR_RETURN(b.model, BuildDemoModel(spec));
    b.name = spec;
    if (tokenizer_path.empty()) {
      b.tokenizer = MakeByteTokenizer();
      return b;
    }
  } else {
    TM_ASSIGN_OR_RETURN(b.model, LoadModel(spec));
    b.name = DisplayName(spec);
  }
  const std::string tok = tokenizer_path.empty() ? TokenizerSourceOf(spec) : tokenizer_path;
  if (!tokenizer_path.empty() || HasTokenizerFiles(tok)) {
    auto t = LoadTokenizer(tok);
    if (!t.ok()) {
      return absl::Status(t.status().code(),
                          absl::StrCat("tokenizer for ", spec, ": ", std::string(t.status().message())));
    }
    b.tokenizer = std::move(t).value();
    if (b.tokenizer->vocab_size() > b.model->config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer ", tok, " has ", b.tokenizer->vocab_size(), " tokens but the model's ",
          "vocabulary is ", b.model->config.vocab_size));
    }
    auto source = LoadChatTemplateSource(tok);
    if (source.ok()) {
      auto parsed = ChatTemplate::Parse(source->source);
      if (parsed.ok()) {
        b.chat_template = std::move(parsed).value();
        b.chat_template_source = std::move(source).value();
      } else {
        spdlog::warn("chat template of {} does not parse, chat requests will fail: {}", tok,
                     parsed.status().ToString());
      }
    }
  } else {
    spdlog::warn("{} ships no tokenizer: requests must give token ids", spec);
  }
  return b;
}

void WarnIfRandomWeights(const ModelBundle& bundle) {
  if (bundle.model->config.is_random_weights) {
    spdlog::warn("model '{}' has RANDOM WEIGHTS: its output is meaningless (demo model)",
                 bundle.name);
  }
}

}  // namespace tokenmill
