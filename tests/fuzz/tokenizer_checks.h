// Properties every Tokenizer must have on any input, shared by the tokenizer fuzz targets.
// Each check aborts through TM_FUZZ_ASSERT when the property fails.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::fuzz {

// Encodes `text`; every id must be in [0, vocab_size). Returns the ids (empty on an error
// Status, which is allowed only where the tokenizer cannot tokenize the text at all).
std::vector<int32_t> CheckEncode(const Tokenizer& tok, std::string_view text,
                                 const EncodeOptions& options);

// Feeds `ids` one at a time to an IncrementalDetokenizer (for skip_special false and true):
// exactly the out-of-range ids are rejected, and the streamed text equals Decode of the
// accepted ids (detokenizer.h's contract). Decode of all of `ids` fails iff one is out of
// range. Returns Decode of the accepted ids with skip_special = false.
std::string CheckStreamingDecode(const Tokenizer& tok, std::span<const int32_t> ids);

// Every public accessor over the whole vocabulary: TokenString / TokenBytes / IsSpecial /
// IsByteToken of each id, TokenToId of each stored string, bos/eos/pad in range.
void CheckVocabulary(const Tokenizer& tok);

}  // namespace tokenmill::fuzz
