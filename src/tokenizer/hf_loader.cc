// HF tokenizer.json + tokenizer_config.json, and the vocab.json + merges.txt layout
// (synthesized into the equivalent tokenizer.json).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tokenizer/loaders.h"
#include "tokenizer/model_tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenmill/core/status.h"

namespace tokenmill::tokenizer_internal {
namespace fs = std::filesystem;
using nlohmann::json;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<json> ReadJsonFile(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  return j;
}

namespace {

// "<s>" or {"content": "<s>", ...} (transformers' AddedToken serialization).
std::string TokenContent(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j.at("content").get<std::string>();
  return "";
}

// Vocabulary arrays are sized by the largest token id, so ids are bounded: the largest
// real vocabularies have ~262K entries.
constexpr int64_t kMaxTokenId = (int64_t{1} << 21) - 1;

// A token id as tokenizer.json writes it: an integer in [0, kMaxTokenId]. Anything else
// (negative, huge, a float, a string) is InvalidArgument naming `what`.
absl::StatusOr<int32_t> TokenId(const json& j, std::string_view what) {
  bool in_range = false;
  if (j.is_number_unsigned()) {
    in_range = j.get<uint64_t>() <= static_cast<uint64_t>(kMaxTokenId);
  } else if (j.is_number_integer()) {
    in_range = j.get<int64_t>() >= 0 && j.get<int64_t>() <= kMaxTokenId;
  }
  if (!in_range) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": token id ", j.dump(),
                                                   " is not an integer in [0, ", kMaxTokenId, "]"));
  }
  return static_cast<int32_t>(j.get<int64_t>());
}

bool IsByteTokenString(std::string_view s) {
  return s.size() == 6 && s.starts_with("<0x") && s.ends_with(">");
}

struct PostProcessor {
  std::vector<int32_t> prefix, suffix;
};

absl::Status ParsePostProcessor(const json& j, PostProcessor* post) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) TM_RETURN_IF_ERROR(ParsePostProcessor(p, post));
  } else if (type == "TemplateProcessing") {
    bool seen_a = false;
    for (const auto& piece : j.at("single")) {
      if (piece.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      const auto& ids = j.at("special_tokens").at(name).at("ids");
      for (const auto& id : ids) {
        TM_ASSIGN_OR_RETURN(int32_t value, TokenId(id, "post_processor special_tokens"));
        (seen_a ? post->suffix : post->prefix).push_back(value);
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    TM_ASSIGN_OR_RETURN(int32_t cls, TokenId(j.at("cls").at(1), "post_processor cls"));
    TM_ASSIGN_OR_RETURN(int32_t sep, TokenId(j.at("sep").at(1), "post_processor sep"));
    post->prefix = {cls};
    post->suffix = {sep};
  } else if (type != "ByteLevel") {
    return absl::UnimplementedError(absl::StrCat("unsupported post_processor type '", type, "'"));
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> ParseMerges(const json& merges) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const auto& m : merges) {
    if (m.is_array()) {
      out.emplace_back(m.at(0).get<std::string>(), m.at(1).get<std::string>());
    } else {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);  // HF splits "a b" on the space
      if (sp == std::string::npos) continue;
      out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    }
  }
  return out;
}

// tokenizer_config.json overrides: add_bos_token / add_eos_token (as transformers'
// Llama tokenizers rebuild their template), special tokens, chat template.
void ApplyConfig(const json& config, const absl::flat_hash_map<std::string, int32_t>& by_content,
                 ModelTokenizer::Parts* parts) {
  auto id_of = [&](const char* key) -> int32_t {
    if (!config.contains(key)) return -2;  // absent
    const std::string content = TokenContent(config.at(key));
    auto it = by_content.find(content);
    return it == by_content.end() ? -1 : it->second;
  };
  if (int32_t bos = id_of("bos_token"); bos != -2) parts->bos_id = bos;
  if (int32_t eos = id_of("eos_token"); eos >= 0) parts->eos_ids = {eos};
  if (int32_t pad = id_of("pad_token"); pad != -2) parts->pad_id = pad;
  auto set_flag = [](std::vector<int32_t>* ids, int32_t id, bool on) {
    std::erase(*ids, id);
    if (on && id >= 0) ids->insert(ids->begin(), id);
  };
  if (config.contains("add_bos_token") && config.at("add_bos_token").is_boolean()) {
    set_flag(&parts->prefix_ids, parts->bos_id, config.at("add_bos_token").get<bool>());
  }
  if (config.contains("add_eos_token") && config.at("add_eos_token").is_boolean() &&
      !parts->eos_ids.empty()) {
    set_flag(&parts->suffix_ids, parts->eos_ids[0], config.at("add_eos_token").get<bool>());
  }
  if (config.contains("chat_template")) {
    const json& t = config.at("chat_template");
    if (t.is_string()) {
      parts->chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const auto& entry : t) {
        if (entry.value("name", "") == "default")
          parts->chat_template = entry.value("template", "");
      }
    }
  }
}

// generation_config.json's eos_token_id (int or list) is what generation stops on.
void ApplyGenerationConfig(const json& gen, ModelTokenizer::Parts* parts) {
  if (!gen.contains("eos_token_id")) return;
  const json& e = gen.at("eos_token_id");
  std::vector<int32_t> ids;
  for (const json& v : e.is_array() ? e : json::array({e})) {
    if (absl::StatusOr<int32_t> id = TokenId(v, "eos_token_id"); id.ok()) ids.push_back(*id);
  }
  for (int32_t id : ids) {
    if (id >= 0 && id < parts->vocab->size() &&
        std::find(parts->eos_ids.begin(), parts->eos_ids.end(), id) == parts->eos_ids.end()) {
      parts->eos_ids.push_back(id);
    }
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> BuildFromJson(const json& tj, const std::string& dir) {
  const json& model = tj.at("model");
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat("tokenizer model type '", type, "' is not supported (only BPE)"));
  }
  ModelTokenizer::Parts parts;
  TM_ASSIGN_OR_RETURN(parts.normalizer, Normalizer::FromJson(tj.value("normalizer", json())));
  TM_ASSIGN_OR_RETURN(parts.pre_tokenizer,
                      PreTokenizer::FromJson(tj.value("pre_tokenizer", json())));
  const bool byte_level = parts.pre_tokenizer.is_byte_level();
  auto to_model = [byte_level](const std::string& s) {
    std::string bytes;
    return byte_level && ByteLevelDecode(s, &bytes) ? bytes : s;
  };

  // Vocabulary: the model's, then added tokens (which may extend it).
  int32_t size = 0;
  for (const auto& [tok, id] : model.at("vocab").items()) {
    TM_ASSIGN_OR_RETURN(int32_t value, TokenId(id, absl::StrCat("vocab entry '", tok, "'")));
    size = std::max(size, value + 1);
  }
  const json added = tj.value("added_tokens", json::array());
  for (const auto& a : added) {
    TM_ASSIGN_OR_RETURN(int32_t value, TokenId(a.at("id"), "added_tokens"));
    size = std::max(size, value + 1);
  }
  parts.vocab = std::make_unique<Vocab>();
  Vocab& vocab = *parts.vocab;
  vocab.stored.resize(size);
  vocab.model.resize(size);
  vocab.types.assign(size, TokenType::kUnused);
  for (const auto& [tok, id_json] : model.at("vocab").items()) {
    const int32_t id = *TokenId(id_json, "");  // checked above
    vocab.stored[id] = tok;
    vocab.model[id] = to_model(tok);
    vocab.types[id] = IsByteTokenString(tok) ? TokenType::kByte : TokenType::kNormal;
  }
  parts.special.assign(size, false);
  for (const auto& a : added) {
    AddedToken t{.id = *TokenId(a.at("id"), ""),  // checked above
                 .content = a.at("content").get<std::string>(),
                 .special = a.value("special", false),
                 .lstrip = a.value("lstrip", false),
                 .rstrip = a.value("rstrip", false),
                 .single_word = a.value("single_word", false),
                 .normalized = a.value("normalized", false)};
    if (vocab.stored[t.id].empty()) vocab.stored[t.id] = t.content;
    vocab.types[t.id] = t.special ? TokenType::kControl : TokenType::kUserDefined;
    parts.special[t.id] = t.special;
    parts.added_tokens.push_back(std::move(t));
  }
  vocab.BuildIndex();

  BpeOptions options{.byte_level = byte_level,
                     .byte_fallback = model.value("byte_fallback", false),
                     .ignore_merges = model.value("ignore_merges", false),
                     .fuse_unk = model.value("fuse_unk", false)};
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    options.unk_id = vocab.Find(to_model(model.at("unk_token").get<std::string>()));
  }
  if (model.contains("continuing_subword_prefix") &&
      model.at("continuing_subword_prefix").is_string()) {
    options.continuing_subword_prefix = model.at("continuing_subword_prefix").get<std::string>();
  }
  if (model.contains("end_of_word_suffix") && model.at("end_of_word_suffix").is_string()) {
    options.end_of_word_suffix = model.at("end_of_word_suffix").get<std::string>();
  }
  auto merges = ParseMerges(model.value("merges", json::array()));
  for (auto& [a, b] : merges) {
    a = to_model(a);
    b = to_model(b);
  }
  TM_ASSIGN_OR_RETURN(auto bpe, BpeModel::FromMerges(parts.vocab.get(), merges, options));
  parts.model = std::move(bpe);

  PostProcessor post;
  TM_RETURN_IF_ERROR(ParsePostProcessor(tj.value("post_processor", json()), &post));
  for (const std::vector<int32_t>* ids : {&post.prefix, &post.suffix}) {
    for (int32_t id : *ids) {
      if (id >= size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "post_processor: token id ", id, " is outside the vocabulary of ", size));
      }
    }
  }
  parts.prefix_ids = post.prefix;
  parts.suffix_ids = post.suffix;
  if (!post.prefix.empty()) parts.bos_id = post.prefix.front();
  if (!post.suffix.empty()) parts.eos_ids = {post.suffix.back()};
  TM_RETURN_IF_ERROR(BuildDecodeTable(tj.value("decoder", json()), &parts));

  // Config files refer to tokens by content; resolve through a provisional lookup.
  absl::flat_hash_map<std::string, int32_t> by_content;
  for (int32_t id = 0; id < size; ++id) by_content.try_emplace(vocab.stored[id], id);
  for (const AddedToken& t : parts.added_tokens) by_content[t.content] = t.id;
  if (!dir.empty()) {
    const fs::path config_path = fs::path(dir) / "tokenizer_config.json";
    if (fs::exists(config_path)) {
      TM_ASSIGN_OR_RETURN(json config, ReadJsonFile(config_path.string()));
      ApplyConfig(config, by_content, &parts);
    }
    const fs::path gen_path = fs::path(dir) / "generation_config.json";
    if (fs::exists(gen_path)) {
      TM_ASSIGN_OR_RETURN(json gen, ReadJsonFile(gen_path.string()));
      ApplyGenerationConfig(gen, &parts);
    }
  }
  return std::unique_ptr<Tokenizer>(new ModelTokenizer(std::move(parts)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const json& tokenizer_json,
                                                           const std::string& source,
                                                           const std::string& dir) {
  try {
    auto result = BuildFromJson(tokenizer_json, dir);
    if (!result.ok()) {
      return absl::Status(result.status().code(),
                          absl::StrCat(source, ": ", result.status().message()));
    }
    return result;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": malformed tokenizer: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJsonFile(const std::string& path) {
  TM_ASSIGN_OR_RETURN(json tj, ReadJsonFile(path));
  return LoadHfTokenizer(tj, path, fs::path(path).parent_path().string());
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadVocabMerges(const std::string& dir) {
  const std::string vocab_path = (fs::path(dir) / "vocab.json").string();
  const std::string merges_path = (fs::path(dir) / "merges.txt").string();
  TM_ASSIGN_OR_RETURN(json vocab, ReadJsonFile(vocab_path));
  TM_ASSIGN_OR_RETURN(std::string merges_text, ReadFile(merges_path));
  json config = json::object();
  const fs::path config_path = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    TM_ASSIGN_OR_RETURN(config, ReadJsonFile(config_path.string()));
  }
  try {
    json merges = json::array();
    for (absl::string_view line : absl::StrSplit(merges_text, '\n')) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || absl::StartsWith(line, "#version")) continue;
      merges.push_back(std::string(line));
    }
    const std::string cls = config.value("tokenizer_class", std::string("GPT2Tokenizer"));
    const bool qwen = cls.starts_with("Qwen2");
    json tj = {
        {"model", {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}}},
        {"decoder", {{"type", "ByteLevel"}}}};
    if (qwen) {
      // What transformers' Qwen2TokenizerFast converter builds.
      tj["normalizer"] = {{"type", "NFC"}};
      tj["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern",
              {{"Regex",
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    } else {
      tj["pre_tokenizer"] = {{"type", "ByteLevel"},
                             {"add_prefix_space", config.value("add_prefix_space", false)},
                             {"use_regex", true}};
    }
    // Added tokens: transformers' added_tokens_decoder, plus the named special tokens.
    json added = json::array();
    std::set<int32_t> seen;
    if (config.contains("added_tokens_decoder")) {
      for (const auto& [id, t] : config.at("added_tokens_decoder").items()) {
        int32_t value = -1;
        if (!absl::SimpleAtoi(id, &value) || value < 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              config_path.string(), ": added_tokens_decoder key '", id, "' is not a token id"));
        }
        json a = t;
        a["id"] = value;
        seen.insert(value);
        added.push_back(std::move(a));
      }
    }
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (!config.contains(key)) continue;
      const std::string content = TokenContent(config.at(key));
      if (content.empty() || !tj["model"]["vocab"].contains(content)) continue;
      TM_ASSIGN_OR_RETURN(const int32_t id, TokenId(tj["model"]["vocab"][content], content));
      if (seen.insert(id).second) {
        added.push_back({{"id", id}, {"content", content}, {"special", true}});
      }
    }
    tj["added_tokens"] = std::move(added);
    return LoadHfTokenizer(tj, vocab_path, dir);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": malformed vocab/merges: ", e.what()));
  }
}

}  // namespace tokenmill::tokenizer_internal
