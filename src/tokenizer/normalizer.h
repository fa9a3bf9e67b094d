// HF tokenizers' normalizers (NFC/NFD/NFKC/NFKD, Replace, Prepend, Lowercase, Strip,
// Sequence), applied to the text between added tokens. Immutable, thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace tokenmill::tokenizer_internal {

class Normalizer {
 public:
  // From a tokenizer.json "normalizer" value (null: identity). Unknown types are an
  // error naming the type.
  static absl::StatusOr<Normalizer> FromJson(const nlohmann::json& j);
  // Prepend then replace every ' ' (SentencePiece escaping, llama.cpp's SPM path).
  static Normalizer SentencePiece(std::string_view space_replacement, bool add_prefix);

  bool empty() const { return steps_.empty(); }
  absl::StatusOr<std::string> Apply(std::string_view text) const;

 private:
  enum class Kind { kUnicode, kReplace, kReplaceRegex, kPrepend, kLowercase, kStrip };
  struct Step {
    Kind kind;
    NormalForm form = NormalForm::kNFC;
    std::string pattern{}, content{};
    std::shared_ptr<const Regex> regex{};
    bool strip_left = false, strip_right = false;
  };
  absl::Status Add(const nlohmann::json& j);
  std::vector<Step> steps_;
};

}  // namespace tokenmill::tokenizer_internal
