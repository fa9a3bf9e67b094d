// Added/special tokens found literally in text before the model runs (HF tokenizers'
// AddedVocabulary: leftmost-longest matching, lstrip/rstrip/single_word flags).
// Immutable, thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace tokenmill::tokenizer_internal {

struct AddedToken {
  int32_t id = -1;
  std::string content{};
  bool special = false;  // skipped when parse_special is off
  bool lstrip = false, rstrip = false, single_word = false;
  bool normalized = false;  // matched in normalized text rather than raw text
};

// A piece of text: either an added token (id >= 0) or a span to encode.
struct TextSpan {
  int32_t id;  // -1: plain text [begin, end)
  size_t begin, end;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }

  // Splits `text` into added tokens and plain spans (covering it, in order; empty spans
  // are omitted). With `parse_special` false, special tokens are not matched, exactly as
  // HF's encode_special_tokens (the automaton still consumes them).
  void Split(std::string_view text, bool parse_special, std::vector<TextSpan>* out) const;

 private:
  struct Node {
    absl::flat_hash_map<uint8_t, int32_t> next;
    int32_t token = -1;  // index into tokens_
  };
  // Longest token starting at `pos`, -1 if none.
  int32_t LongestAt(std::string_view text, size_t pos, size_t* end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;
  bool first_byte_[256] = {};
};

}  // namespace tokenmill::tokenizer_internal
