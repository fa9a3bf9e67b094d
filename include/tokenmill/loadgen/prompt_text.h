// Prompt text of an exact token length, for servers that take text only.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "tokenmill/loadgen/workload.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::loadgen {

// Number of ids `tokenizer` gives `text` the way an OpenAI-compatible server tokenizes a
// text prompt: the tokenizer's default special tokens (BOS) added, special tokens parsed.
absl::StatusOr<int> CountPromptTokens(const Tokenizer& tokenizer, const std::string& text);

// Text that CountPromptTokens counts as exactly ids.size() tokens. Starts from the decoded
// `ids` (BOS and other specials skipped), so prompts that extend each other as ids extend
// each other as text up to a repaired tail; then trims or appends content tokens (drawn
// with `seed`) until the count is exact. Error when no text of that length is found
// (ids.size() below the tokenizer's own special tokens, or a tokenizer that merges every
// addition).
absl::StatusOr<std::string> PromptTextOfLength(const Tokenizer& tokenizer,
                                               const TokenSource& source,
                                               std::span<const int32_t> ids, uint64_t seed);

}  // namespace tokenmill::loadgen
