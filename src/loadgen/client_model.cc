#include "tokenmill/loadgen/client_model.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/gguf.h"
#include "tokenmill/core/status.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/gguf_config.h"
#include "tokenmill/model/hf_config.h"

namespace tokenmill::loadgen {
namespace fs = std::filesystem;

absl::StatusOr<ClientModel> LoadClientModel(const std::string& spec,
                                            const std::string& tokenizer_path) {
  ClientModel m;
  std::string model_path = spec;
  if (IsDemoSpec(spec)) {
    TM_ASSIGN_OR_RETURN(ModelConfig config, DemoConfig(spec));
    m.name = spec;
    m.max_model_len = config.max_position_embeddings;
    if (tokenizer_path.empty()) {
      m.tokenizer = MakeByteTokenizer();
      return m;
    }
  } else {
    fs::path p(spec);
    if (p.filename() == "config.json") p = p.parent_path();
    model_path = p.string();
    if (!fs::exists(p))
      return absl::NotFoundError(absl::StrCat("--model ", spec, ": no such file"));
    if (p.extension() == ".gguf") {
      m.name = p.stem().string();
      TM_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(p.string()));
      TM_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(*gguf));
      m.max_model_len = config.max_position_embeddings;
    } else {
      m.name = p.filename().string();
      if (fs::exists(p / "config.json")) {
        TM_ASSIGN_OR_RETURN(ModelConfig config, LoadHfConfig((p / "config.json").string()));
        m.max_model_len = config.max_position_embeddings;
      }
    }
  }
  const std::string source = tokenizer_path.empty() ? model_path : tokenizer_path;
  auto tok = LoadTokenizer(source);
  if (!tok.ok()) {
    return absl::Status(
        tok.status().code(),
        absl::StrCat("tokenizer for ", spec, " (prompts are built from it; ",
                     "--tokenizer overrides): ", std::string(tok.status().message())));
  }
  m.tokenizer = std::move(tok).value();
  return m;
}

}  // namespace tokenmill::loadgen
