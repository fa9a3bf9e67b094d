// HF tokenizers' pre-tokenizers (ByteLevel, Split, Metaspace, Digits, Whitespace,
// WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence) and llama.cpp's regex
// pre-tokenizers for GGUF "gpt2" vocabularies. Splits one normalized segment into the
// words the model encodes separately. Immutable, thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/regex.h"

namespace tokenmill::tokenizer_internal {

// GPT-2's pre-tokenizer pattern (HF ByteLevel use_regex=true).
inline constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Llama 3 (tiktoken cl100k-style) pattern.
inline constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct PreToken {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the original text (Metaspace "first")
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // From a tokenizer.json "pre_tokenizer" value (null: the whole segment is one word).
  static absl::StatusOr<PreTokenizer> FromJson(const nlohmann::json& j);
  // llama.cpp's BPE pre-tokenizer for a tokenizer.ggml.pre name: its regexes applied in
  // order, matches and gaps both kept. Unknown names fall back to llama.cpp's default.
  static absl::StatusOr<PreTokenizer> ForLlamaCppPre(const std::string& pre);
  // One regex, matches and gaps kept (tiktoken).
  static absl::StatusOr<PreTokenizer> ForPattern(const std::string& pattern);

  // True when a ByteLevel step maps words to GPT-2 byte-level characters (the model's
  // vocabulary is then in that alphabet).
  bool is_byte_level() const { return byte_level_; }
  // Appends the words of `segment`; `at_start`: the segment begins the whole text.
  void Split(std::string_view segment, bool at_start, std::vector<PreToken>* out) const;

 private:
  enum class Kind {
    kRegex,
    kByteLevel,
    kMetaspace,
    kDigits,
    kWhitespaceSplit,
    kPunctuation,
    kStringSplit
  };
  struct Step {
    Kind kind;
    std::shared_ptr<const Regex> regex{};  // kRegex, kByteLevel with use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool flag = false;       // ByteLevel add_prefix_space; Digits individual; Metaspace split
    std::string text{};      // Metaspace replacement; kStringSplit delimiter
    int prepend_scheme = 0;  // Metaspace: 0 always, 1 first, 2 never
  };
  absl::Status Add(const nlohmann::json& j);
  void ApplyStep(const Step& step, std::vector<PreToken>* words) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace tokenmill::tokenizer_internal
