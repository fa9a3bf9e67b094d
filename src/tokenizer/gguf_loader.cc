// GGUF vocabularies as llama.cpp reads them (llama-vocab.cpp): "llama" is SentencePiece
// BPE driven by token scores, "gpt2" is byte-level BPE with ranked merges and a
// pre-tokenizer chosen by tokenizer.ggml.pre.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/loaders.h"
#include "tokenizer/model_tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenmill/core/gguf.h"
#include "tokenmill/core/status.h"

namespace tokenmill::tokenizer_internal {
namespace {

using nlohmann::json;

// llama_token_type in GGUF files.
TokenType GgufTokenType(int64_t t) {
  switch (t) {
    case 2:
      return TokenType::kUnknown;
    case 3:
      return TokenType::kControl;
    case 4:
      return TokenType::kUserDefined;
    case 5:
      return TokenType::kUnused;
    case 6:
      return TokenType::kByte;
    default:
      return TokenType::kNormal;
  }
}

int32_t OptionalId(const GgufFile& f, const std::string& key, int32_t fallback, int32_t size) {
  auto v = f.GetInt(key);
  if (!v.ok()) return fallback;
  return *v >= 0 && *v < size ? static_cast<int32_t>(*v) : -1;
}

bool OptionalBool(const GgufFile& f, const std::string& key, bool fallback) {
  auto v = f.GetBool(key);
  return v.ok() ? *v : fallback;
}

bool IsLlama3Family(const std::string& pre) {
  for (const char* n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx",
                        "smaug-bpe", "chatglm-bpe", "gpt-4o", "superbpe"}) {
    if (pre == n) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Build(const GgufFile& f) {
  TM_ASSIGN_OR_RETURN(const std::string kind, f.GetString("tokenizer.ggml.model"));
  if (kind != "llama" && kind != "gpt2") {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.ggml.model '", kind, "' is not supported (only 'llama' and 'gpt2' BPE)"));
  }
  const bool spm = kind == "llama";
  TM_ASSIGN_OR_RETURN(std::vector<std::string> tokens, f.GetStringArray("tokenizer.ggml.tokens"));
  const int32_t size = static_cast<int32_t>(tokens.size());
  std::vector<int64_t> types(size, 1);
  if (f.Has("tokenizer.ggml.token_type")) {
    TM_ASSIGN_OR_RETURN(types, f.GetIntArray("tokenizer.ggml.token_type"));
    if (static_cast<int32_t>(types.size()) != size) {
      return absl::InvalidArgumentError("tokenizer.ggml.token_type: length differs from tokens");
    }
  }
  ModelTokenizer::Parts parts;
  parts.vocab = std::make_unique<Vocab>();
  Vocab& vocab = *parts.vocab;
  vocab.stored = tokens;
  vocab.types.resize(size);
  vocab.model.resize(size);
  for (int32_t i = 0; i < size; ++i) {
    vocab.types[i] = GgufTokenType(types[i]);
    std::string bytes;
    vocab.model[i] = !spm && ByteLevelDecode(tokens[i], &bytes) ? bytes : tokens[i];
  }
  vocab.BuildIndex();

  std::string pre = "default";
  if (auto p = f.GetString("tokenizer.ggml.pre"); p.ok()) pre = *p;
  std::string name;
  if (auto n = f.GetString("general.name"); n.ok()) name = absl::AsciiStrToLower(*n);
  const bool phi3 =
      name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos;

  // Tokens llama.cpp splits out before the model: control and unknown (only when parsing
  // special tokens) and user-defined (always). Phi-3 strips spaces after its specials.
  parts.special.assign(size, false);
  for (int32_t i = 0; i < size; ++i) {
    const TokenType t = vocab.types[i];
    if (t != TokenType::kControl && t != TokenType::kUnknown && t != TokenType::kUserDefined) {
      continue;
    }
    const bool special = t != TokenType::kUserDefined;
    parts.special[i] = special;
    if (tokens[i].empty()) continue;
    AddedToken a{.id = i, .content = tokens[i], .special = special};
    if (phi3) {
      a.rstrip = special || tokens[i] == "</s>";
      if (tokens[i] == "<unk>" || tokens[i] == "<s>" || tokens[i] == "<|endoftext|>")
        a.rstrip = false;
    }
    parts.added_tokens.push_back(std::move(a));
  }

  json decoder;
  bool add_bos;
  if (spm) {
    std::vector<double> scores_d(size, 0.0);
    if (f.Has("tokenizer.ggml.scores")) {
      TM_ASSIGN_OR_RETURN(scores_d, f.GetFloatArray("tokenizer.ggml.scores"));
      if (static_cast<int32_t>(scores_d.size()) != size) {
        return absl::InvalidArgumentError("tokenizer.ggml.scores: length differs from tokens");
      }
    }
    std::vector<float> scores(scores_d.begin(), scores_d.end());
    parts.model = std::make_unique<SpmModel>(parts.vocab.get(), std::move(scores));
    const bool add_space_prefix = OptionalBool(f, "tokenizer.ggml.add_space_prefix", true);
    parts.normalizer = Normalizer::SentencePiece("\u2581", add_space_prefix);
    decoder = {{"type", "Sequence"},
               {"decoders",
                {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                 {{"type", "ByteFallback"}},
                 {{"type", "Fuse"}},
                 {{"type", "Strip"},
                  {"content", " "},
                  {"start", add_space_prefix ? 1 : 0},
                  {"stop", 0}}}}};
    parts.bos_id = OptionalId(f, "tokenizer.ggml.bos_token_id", 1, size);
    parts.eos_ids = {OptionalId(f, "tokenizer.ggml.eos_token_id", 2, size)};
    add_bos = OptionalBool(f, "tokenizer.ggml.add_bos_token", true);
  } else {
    TM_ASSIGN_OR_RETURN(std::vector<std::string> merge_lines,
                        f.GetStringArray("tokenizer.ggml.merges"));
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merge_lines.size());
    for (const std::string& line : merge_lines) {
      const size_t sp = line.find(' ', 1);
      if (sp == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.ggml.merges: bad entry '", line, "'"));
      }
      std::string a, b;
      if (!ByteLevelDecode(line.substr(0, sp), &a)) a = line.substr(0, sp);
      if (!ByteLevelDecode(line.substr(sp + 1), &b)) b = line.substr(sp + 1);
      merges.emplace_back(std::move(a), std::move(b));
    }
    TM_ASSIGN_OR_RETURN(
        auto bpe, BpeModel::FromMerges(parts.vocab.get(), merges,
                                       {.byte_level = true, .ignore_merges = IsLlama3Family(pre)}));
    parts.model = std::move(bpe);
    TM_ASSIGN_OR_RETURN(parts.pre_tokenizer, PreTokenizer::ForLlamaCppPre(pre));
    decoder = {{"type", "ByteLevel"}};
    parts.bos_id = OptionalId(f, "tokenizer.ggml.bos_token_id", 11, size);
    parts.eos_ids = {OptionalId(f, "tokenizer.ggml.eos_token_id", 11, size)};
    add_bos = OptionalBool(f, "tokenizer.ggml.add_bos_token", IsLlama3Family(pre));
  }
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = OptionalId(f, key, -1, size);
    if (id >= 0 &&
        std::find(parts.eos_ids.begin(), parts.eos_ids.end(), id) == parts.eos_ids.end()) {
      parts.eos_ids.push_back(id);
    }
  }
  std::erase(parts.eos_ids, -1);
  parts.pad_id = OptionalId(f, "tokenizer.ggml.padding_token_id", -1, size);
  if (add_bos && parts.bos_id >= 0) parts.prefix_ids = {parts.bos_id};
  if (OptionalBool(f, "tokenizer.ggml.add_eos_token", false) && !parts.eos_ids.empty()) {
    parts.suffix_ids = {parts.eos_ids.front()};
  }
  if (auto t = f.GetString("tokenizer.chat_template"); t.ok()) parts.chat_template = *t;
  TM_RETURN_IF_ERROR(BuildDecodeTable(decoder, &parts));
  return std::unique_ptr<Tokenizer>(new ModelTokenizer(std::move(parts)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const std::string& path) {
  TM_ASSIGN_OR_RETURN(auto file, GgufFile::Open(path));
  auto result = Build(*file);
  if (!result.ok()) {
    return absl::Status(result.status().code(),
                        absl::StrCat(path, ": ", result.status().message()));
  }
  return result;
}

}  // namespace tokenmill::tokenizer_internal
