#include "tokenmill/loadgen/prompt_text.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "loadgen/rng.h"
#include "loadgen/utf8.h"
#include "tokenmill/core/status.h"

namespace tokenmill::loadgen {
namespace {

// Byte offsets of every code point boundary of `text` (0 and size() included).
std::vector<size_t> Boundaries(const std::string& text) {
  std::vector<size_t> b{0};
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    i += n == 0 ? 1 : n;
    b.push_back(i);
  }
  return b;
}

// The longest prefix of `text` (at a code point boundary) counting <= target tokens. The
// count grows with the prefix up to local re-segmentation, so a binary search lands at
// (or next to) the boundary where it reaches the target.
absl::StatusOr<std::string> TrimToAtMost(const Tokenizer& tok, const std::string& text,
                                         int target) {
  const std::vector<size_t> b = Boundaries(text);
  size_t lo = 0, hi = b.size() - 1;  // count(prefix(b[lo])) <= target assumed
  while (lo < hi) {
    const size_t mid = (lo + hi + 1) / 2;
    TM_ASSIGN_OR_RETURN(int c, CountPromptTokens(tok, text.substr(0, b[mid])));
    if (c <= target) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return text.substr(0, b[lo]);
}

}  // namespace

absl::StatusOr<int> CountPromptTokens(const Tokenizer& tokenizer, const std::string& text) {
  EncodeOptions opts;
  opts.parse_special = true;
  TM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(text, opts));
  return static_cast<int>(ids.size());
}

absl::StatusOr<std::string> PromptTextOfLength(const Tokenizer& tok, const TokenSource& source,
                                               std::span<const int32_t> ids, uint64_t seed) {
  const int target = static_cast<int>(ids.size());
  TM_ASSIGN_OR_RETURN(std::string text, tok.Decode(ids, /*skip_special=*/true));
  TM_ASSIGN_OR_RETURN(const int empty_count, CountPromptTokens(tok, ""));
  if (target <= empty_count) {
    return absl::InvalidArgumentError(absl::StrCat("a text prompt of ", target,
                                                   " tokens is impossible: the tokenizer adds ",
                                                   empty_count, " special tokens to any text"));
  }
  Rng rng(seed, /*stream=*/7);
  const int64_t last = static_cast<int64_t>(source.content_ids.size()) - 1;
  auto random_piece = [&]() -> absl::StatusOr<std::string> {
    const int32_t id = source.content_ids[rng.UniformInt(0, last)];
    return tok.Decode(std::span<const int32_t>(&id, 1), true);
  };
  TM_ASSIGN_OR_RETURN(int count, CountPromptTokens(tok, text));
  // A few rounds of: grow past the target, trim back to at most the target; a round that
  // lands one short (the next character merges two tokens or adds two) draws other text.
  for (int round = 0; round < 64; ++round) {
    while (count < target) {
      for (int k = 0; k < target - count; ++k) {
        TM_ASSIGN_OR_RETURN(std::string piece, random_piece());
        text += piece;
      }
      TM_ASSIGN_OR_RETURN(count, CountPromptTokens(tok, text));
    }
    if (count == target) return text;
    TM_ASSIGN_OR_RETURN(text, TrimToAtMost(tok, text, target));
    TM_ASSIGN_OR_RETURN(count, CountPromptTokens(tok, text));
    if (count == target) return text;
  }
  return absl::InternalError(absl::StrCat("no prompt text of exactly ", target,
                                          " tokens found (last try: ", count,
                                          "); use --prompt-format ids"));
}

}  // namespace tokenmill::loadgen
