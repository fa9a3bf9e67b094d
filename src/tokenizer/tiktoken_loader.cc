// Llama 3's tiktoken tokenizer.model: one "base64(token bytes) rank" line per token;
// ranks are ids and merge priorities. The special tokens are not in the file.
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tokenizer/loaders.h"
#include "tokenizer/model_tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenmill/core/status.h"

namespace tokenmill::tokenizer_internal {
namespace {

constexpr int kNumSpecialTokens = 256;

// llama-models' Llama 3.1+ table (ids from the end of the ranks); Llama 3.0 names some
// of these reserved_special_token_N, the ids of the ones in use are the same.
std::vector<std::string> Llama3SpecialTokens() {
  std::vector<std::string> names = {"<|begin_of_text|>",
                                    "<|end_of_text|>",
                                    "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>",
                                    "<|finetune_right_pad_id|>",
                                    "<|step_id|>",
                                    "<|start_header_id|>",
                                    "<|end_header_id|>",
                                    "<|eom_id|>",
                                    "<|eot_id|>",
                                    "<|python_tag|>",
                                    "<|image|>"};
  for (int i = 2; names.size() < kNumSpecialTokens; ++i) {
    names.push_back(absl::StrCat("<|reserved_special_token_", i, "|>"));
  }
  return names;
}

}  // namespace

bool LooksLikeTiktoken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t sp = line.find(' ');
  if (sp == std::string::npos || sp == 0) return false;
  for (size_t i = 0; i < sp; ++i) {
    const char c = line[i];
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return false;
  }
  int rank = 0;
  return absl::SimpleAtoi(absl::string_view(line).substr(sp + 1), &rank);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTiktoken(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<std::pair<int32_t, std::string>> entries;
  int32_t num_ranks = 0;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ++line_no;
    const size_t sp = line.find(' ');
    std::string bytes;
    int32_t rank = -1;
    if (sp == absl::string_view::npos || !absl::Base64Unescape(line.substr(0, sp), &bytes) ||
        !absl::SimpleAtoi(line.substr(sp + 1), &rank) || rank < 0 || bytes.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": expected 'base64 rank'"));
    }
    num_ranks = std::max(num_ranks, rank + 1);
    entries.emplace_back(rank, std::move(bytes));
  }
  ModelTokenizer::Parts parts;
  const int32_t size = num_ranks + kNumSpecialTokens;
  parts.vocab = std::make_unique<Vocab>();
  Vocab& vocab = *parts.vocab;
  vocab.stored.resize(size);
  vocab.model.resize(size);
  vocab.types.assign(size, TokenType::kNormal);
  parts.piece_bytes.resize(size);
  for (auto& [rank, bytes] : entries) {
    vocab.stored[rank] = ByteLevelEncode(bytes);
    parts.piece_bytes[rank] = bytes;
    vocab.model[rank] = std::move(bytes);
  }
  parts.special.assign(size, false);
  const std::vector<std::string> specials = Llama3SpecialTokens();
  for (int i = 0; i < kNumSpecialTokens; ++i) {
    const int32_t id = num_ranks + i;
    vocab.stored[id] = specials[i];
    vocab.types[id] = TokenType::kControl;
    parts.piece_bytes[id] = specials[i];
    parts.special[id] = true;
    parts.added_tokens.push_back({.id = id, .content = specials[i], .special = true});
  }
  vocab.BuildIndex();
  parts.is_byte_token.assign(size, false);
  TM_ASSIGN_OR_RETURN(parts.pre_tokenizer, PreTokenizer::ForPattern(std::string(kLlama3Pattern)));
  TM_ASSIGN_OR_RETURN(auto bpe, BpeModel::FromRanks(parts.vocab.get(),
                                                    {.byte_level = true, .ignore_merges = true}));
  parts.model = std::move(bpe);
  parts.bos_id = num_ranks;                                       // <|begin_of_text|>
  parts.eos_ids = {num_ranks + 1, num_ranks + 9, num_ranks + 8};  // end_of_text, eot, eom
  parts.pad_id = -1;
  parts.prefix_ids = {parts.bos_id};
  return std::unique_ptr<Tokenizer>(new ModelTokenizer(std::move(parts)));
}

}  // namespace tokenmill::tokenizer_internal
