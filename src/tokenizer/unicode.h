// UTF-8 and Unicode helpers shared by the tokenizer pipeline: decoding code points,
// lossy UTF-8 repair (U+FFFD exactly as Rust's String::from_utf8_lossy, which HF
// tokenizers uses), GPT-2's byte <-> unicode map, normalization through utf8proc.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tokenmill::tokenizer_internal {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the UTF-8 sequence announced by lead byte `c` (1 for invalid leads), as
// llama.cpp's unicode_len_utf8.
inline int Utf8SeqLen(uint8_t c) {
  static constexpr int kLens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLens[c >> 4];
}

// Length of the valid UTF-8 sequence at s[i] (1..4), 0 if the bytes there are invalid,
// -1 if they are a valid but incomplete prefix cut by the end of `s`.
int ValidSeqLen(std::string_view s, size_t i);

// Appends `s` to `out` with each maximal invalid subsequence replaced by U+FFFD.
void AppendUtf8Lossy(std::string_view s, std::string* out);
// Like AppendUtf8Lossy, but stops before a trailing incomplete-but-valid prefix, whose
// start offset it returns (s.size() when everything was consumed).
size_t AppendUtf8LossyComplete(std::string_view s, std::string* out);
bool IsValidUtf8(std::string_view s);

// Decodes the code point at s[*i] and advances *i; invalid bytes give U+FFFD (one byte).
uint32_t NextCodepoint(std::string_view s, size_t* i);
void AppendCodepoint(uint32_t cp, std::string* out);

// GPT-2 byte-level map: each byte to a printable code point ('Ġ' for ' ').
const std::array<uint32_t, 256>& ByteToUnicode();
// Inverse: code point to byte, -1 when the code point is not in the map.
int UnicodeToByte(uint32_t cp);
// "Ġthe" -> " the"; false when a character is not in the byte map (s is left unchanged).
bool ByteLevelDecode(std::string_view s, std::string* out);
std::string ByteLevelEncode(std::string_view bytes);

bool IsWhitespace(uint32_t cp);  // Rust char::is_whitespace (Unicode White_Space)
bool IsNumeric(uint32_t cp);     // Rust char::is_numeric (Nd, Nl, No)
bool IsAlphanumeric(uint32_t cp);
bool IsPunctuation(uint32_t cp);  // Unicode P* categories

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
// Requires valid UTF-8 (the pipeline repairs input first).
absl::StatusOr<std::string> Normalize(std::string_view s, NormalForm form);
std::string Lowercase(std::string_view s);

}  // namespace tokenmill::tokenizer_internal
