#include "tokenizer/added_tokens.h"

#include "tokenizer/unicode.h"

namespace tokenmill::tokenizer_internal {
namespace {

// Rust's char::is_alphanumeric || '_' (HF's single_word boundary test).
bool IsWordChar(uint32_t cp) { return cp == '_' || IsAlphanumeric(cp); }

uint32_t LastCodepoint(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  return NextCodepoint(s, &start);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& c = tokens_[t].content;
    if (c.empty()) continue;
    first_byte_[static_cast<uint8_t>(c[0])] = true;
    int32_t node = 0;
    for (unsigned char ch : c) {
      auto it = trie_[node].next.find(ch);
      if (it == trie_[node].next.end()) {
        trie_.emplace_back();
        const int32_t created = static_cast<int32_t>(trie_.size()) - 1;
        trie_[node].next[ch] = created;
        node = created;
      } else {
        node = it->second;
      }
    }
    // The same content twice: the later declaration wins, as in HF.
    trie_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedTokenMatcher::LongestAt(std::string_view text, size_t pos, size_t* end) const {
  int32_t node = 0, found = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = trie_[node].next.find(static_cast<uint8_t>(text[i]));
    if (it == trie_[node].next.end()) break;
    node = it->second;
    if (trie_[node].token >= 0) {
      found = trie_[node].token;
      *end = i + 1;
    }
  }
  return found;
}

void AddedTokenMatcher::Split(std::string_view text, bool parse_special,
                              std::vector<TextSpan>* out) const {
  size_t start_offset = 0;  // end of the previous emitted token
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t stop = 0;
    const int32_t t = LongestAt(text, pos, &stop);
    if (t < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    pos = stop;  // leftmost-longest matches never overlap, even when one is discarded
    const AddedToken& tok = tokens_[t];
    if (tok.special && !parse_special) continue;
    if (tok.single_word) {
      const bool start_ok = start == 0 || !IsWordChar(LastCodepoint(text.substr(0, start)));
      size_t i = stop;
      const bool stop_ok = stop == text.size() || !IsWordChar(NextCodepoint(text, &i));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > start_offset) {
        size_t b = s - 1;
        while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
        size_t i = b;
        if (!IsWhitespace(NextCodepoint(text, &i))) break;
        s = b;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t i = stop;
        if (!IsWhitespace(NextCodepoint(text, &i))) break;
        stop = i;
      }
      pos = stop;
    }
    if (start_offset < start) out->push_back({-1, start_offset, start});
    out->push_back({tok.id, start, stop});
    start_offset = stop;
  }
  if (start_offset < text.size()) out->push_back({-1, start_offset, text.size()});
}

}  // namespace tokenmill::tokenizer_internal
