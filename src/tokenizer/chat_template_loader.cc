// Locating a model's chat template in HF model folders, tokenizer configs and GGUF files.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tokenmill/core/gguf.h"
#include "tokenmill/core/status.h"
#include "tokenmill/tokenizer/chat_template.h"

namespace tokenmill {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<nlohmann::ordered_json> ReadJson(const fs::path& path) {
  TM_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  nlohmann::ordered_json json =
      nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  }
  return json;
}

// A special token in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
std::optional<std::string> TokenText(const nlohmann::ordered_json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

// "chat_template" is a string, or a list of {"name", "template"} (HF's named templates).
absl::StatusOr<std::string> PickTemplate(const nlohmann::ordered_json& value,
                                         const std::string& name, const std::string& origin) {
  const std::string wanted = name.empty() ? "default" : name;
  if (value.is_string()) {
    if (!name.empty() && name != "default") {
      return absl::NotFoundError(absl::StrCat(origin, " has no chat template named '", name, "'"));
    }
    return value.get<std::string>();
  }
  if (value.is_array()) {
    for (const auto& entry : value) {
      if (entry.is_object() && entry.value("name", "") == wanted && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return absl::NotFoundError(absl::StrCat(origin, " has no chat template named '", wanted, "'"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": chat_template must be a string or a list of named templates"));
}

void ReadSpecialTokens(const fs::path& dir, ChatTemplateSource* out) {
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    absl::StatusOr<nlohmann::ordered_json> config = ReadJson(dir / file);
    if (!config.ok() || !config->is_object()) continue;
    if (!out->bos_token) out->bos_token = TokenText(*config, "bos_token");
    if (!out->eos_token) out->eos_token = TokenText(*config, "eos_token");
  }
}

absl::StatusOr<ChatTemplateSource> FromDirectory(const fs::path& dir, const std::string& name) {
  ChatTemplateSource out;
  ReadSpecialTokens(dir, &out);
  if (fs::exists(dir / "chat_template.jinja") && (name.empty() || name == "default")) {
    TM_ASSIGN_OR_RETURN(out.source, ReadText(dir / "chat_template.jinja"));
    out.origin = (dir / "chat_template.jinja").string();
    return out;
  }
  for (const char* file : {"chat_template.json", "tokenizer_config.json"}) {
    const fs::path path = dir / file;
    if (!fs::exists(path)) continue;
    TM_ASSIGN_OR_RETURN(nlohmann::ordered_json config, ReadJson(path));
    if (!config.is_object() || !config.contains("chat_template")) continue;
    TM_ASSIGN_OR_RETURN(out.source, PickTemplate(config["chat_template"], name, path.string()));
    out.origin = path.string();
    return out;
  }
  return absl::NotFoundError(absl::StrCat("no chat template found in ", dir.string()));
}

absl::StatusOr<ChatTemplateSource> FromGguf(const std::string& path, const std::string& name) {
  TM_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  const std::string key = name.empty() || name == "default"
                              ? "tokenizer.chat_template"
                              : absl::StrCat("tokenizer.chat_template.", name);
  if (!gguf->Has(key)) return absl::NotFoundError(absl::StrCat(path, " has no ", key));
  ChatTemplateSource out;
  TM_ASSIGN_OR_RETURN(out.source, gguf->GetString(key));
  out.origin = path;
  absl::StatusOr<std::vector<std::string>> tokens = gguf->GetStringArray("tokenizer.ggml.tokens");
  if (tokens.ok()) {
    auto token = [&](const char* id_key) -> std::optional<std::string> {
      absl::StatusOr<int64_t> id = gguf->GetInt(id_key);
      if (!id.ok() || *id < 0 || static_cast<size_t>(*id) >= tokens->size()) return std::nullopt;
      return (*tokens)[static_cast<size_t>(*id)];
    };
    out.bos_token = token("tokenizer.ggml.bos_token_id");
    out.eos_token = token("tokenizer.ggml.eos_token_id");
  }
  return out;
}

}  // namespace

absl::StatusOr<ChatTemplateSource> LoadChatTemplateSource(const std::string& path,
                                                          const std::string& name) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) return FromDirectory(p, name);
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat("no such file: ", path));
  if (absl::EndsWith(path, ".gguf")) return FromGguf(path, name);
  if (absl::EndsWith(path, ".jinja")) {
    ChatTemplateSource out;
    TM_ASSIGN_OR_RETURN(out.source, ReadText(p));
    out.origin = path;
    ReadSpecialTokens(p.parent_path(), &out);
    return out;
  }
  if (p.filename() == "tokenizer.json") return FromDirectory(p.parent_path(), name);
  TM_ASSIGN_OR_RETURN(nlohmann::ordered_json config, ReadJson(p));
  if (!config.is_object() || !config.contains("chat_template")) {
    return absl::NotFoundError(absl::StrCat(path, " has no chat_template"));
  }
  ChatTemplateSource out;
  TM_ASSIGN_OR_RETURN(out.source, PickTemplate(config["chat_template"], name, path));
  out.origin = path;
  out.bos_token = TokenText(config, "bos_token");
  out.eos_token = TokenText(config, "eos_token");
  if (!out.bos_token || !out.eos_token) ReadSpecialTokens(p.parent_path(), &out);
  return out;
}

}  // namespace tokenmill
