// LoadTokenizer's dispatch on what a path holds, and the demo byte tokenizer.
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/loaders.h"
#include "tokenizer/model_tokenizer.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace fs = std::filesystem;
using namespace tokenizer_internal;  // NOLINT: the loaders live there

namespace {

bool HasGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromDirectory(const fs::path& dir) {
  if (fs::exists(dir / "tokenizer.json"))
    return LoadTokenizerJsonFile((dir / "tokenizer.json").string());
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) {
    return LoadVocabMerges(dir.string());
  }
  const fs::path model = dir / "tokenizer.model";
  if (fs::exists(model) && LooksLikeTiktoken(model.string())) return LoadTiktoken(model.string());
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".gguf") {
      return LoadGgufTokenizer(entry.path().string());
    }
  }
  if (fs::exists(model)) {
    return absl::UnimplementedError(
        absl::StrCat(model.string(),
                     ": SentencePiece protobuf models are not supported; use the model's "
                     "tokenizer.json or a GGUF file"));
  }
  return absl::NotFoundError(
      absl::StrCat(dir.string(),
                   ": no tokenizer.json, vocab.json + merges.txt, tiktoken tokenizer.model "
                   "or .gguf file"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) return LoadFromDirectory(p);
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  if (HasGgufMagic(path)) return LoadGgufTokenizer(path);
  if (p.extension() == ".json") return LoadTokenizerJsonFile(path);
  if (LooksLikeTiktoken(path)) return LoadTiktoken(path);
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": not a GGUF file, tokenizer.json or tiktoken tokenizer.model"));
}

std::unique_ptr<Tokenizer> MakeByteTokenizer() {
  constexpr int32_t kBos = 256, kEos = 257, kSize = 258;
  ModelTokenizer::Parts parts;
  parts.vocab = std::make_unique<Vocab>();
  Vocab& vocab = *parts.vocab;
  vocab.stored.resize(kSize);
  vocab.model.resize(kSize);
  vocab.types.assign(kSize, TokenType::kByte);
  parts.piece_bytes.resize(kSize);
  for (int b = 0; b < 256; ++b) {
    vocab.stored[b] = absl::StrFormat("<0x%02X>", b);
    vocab.model[b] = std::string(1, static_cast<char>(b));
    parts.piece_bytes[b] = vocab.model[b];
  }
  const char* names[2] = {"<s>", "</s>"};
  parts.special.assign(kSize, false);
  for (int32_t id : {kBos, kEos}) {
    vocab.stored[id] = names[id - kBos];
    vocab.types[id] = TokenType::kControl;
    parts.piece_bytes[id] = names[id - kBos];
    parts.special[id] = true;
    parts.added_tokens.push_back({.id = id, .content = names[id - kBos], .special = true});
  }
  vocab.BuildIndex();
  parts.is_byte_token.assign(kSize, false);
  auto model = BpeModel::FromMerges(parts.vocab.get(), {}, {.byte_level = true});
  TM_CHECK(model.ok(), model.status().message());
  parts.model = *std::move(model);
  parts.bos_id = kBos;
  parts.eos_ids = {kEos};
  parts.prefix_ids = {kBos};
  return std::make_unique<ModelTokenizer>(std::move(parts));
}

}  // namespace tokenmill
