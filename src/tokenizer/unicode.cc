#include "tokenizer/unicode.h"

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "utf8proc.h"

namespace tokenmill::tokenizer_internal {
namespace {

// Valid range of the second byte after lead `c` (Unicode Table 3-7), {0,0} for an invalid lead.
std::pair<uint8_t, uint8_t> SecondByteRange(uint8_t c) {
  if (c >= 0xC2 && c <= 0xDF) return {0x80, 0xBF};
  if (c == 0xE0) return {0xA0, 0xBF};
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return {0x80, 0xBF};
  if (c == 0xED) return {0x80, 0x9F};
  if (c == 0xF0) return {0x90, 0xBF};
  if (c >= 0xF1 && c <= 0xF3) return {0x80, 0xBF};
  if (c == 0xF4) return {0x80, 0x8F};
  return {0, 0};
}

// Bytes of the longest valid prefix of a sequence at s[i] (the "maximal subpart"), plus
// whether the sequence is complete.
struct SeqScan {
  int len;        // bytes examined that belong to the sequence
  bool complete;  // a whole valid code point
  bool at_end;    // stopped because `s` ended
};

SeqScan ScanSeq(std::string_view s, size_t i) {
  const uint8_t c = static_cast<uint8_t>(s[i]);
  if (c < 0x80) return {1, true, false};
  const int need = Utf8SeqLen(c);
  const auto [lo, hi] = SecondByteRange(c);
  if (lo == 0) return {1, false, false};
  int len = 1;
  for (int k = 1; k < need; ++k) {
    if (i + k >= s.size()) return {len, false, true};
    const uint8_t b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {len, false, false};
    ++len;
  }
  return {len, true, false};
}

}  // namespace

int ValidSeqLen(std::string_view s, size_t i) {
  const SeqScan scan = ScanSeq(s, i);
  if (scan.complete) return scan.len;
  return scan.at_end ? -1 : 0;
}

size_t AppendUtf8LossyComplete(std::string_view s, std::string* out) {
  size_t i = 0, run_start = 0;
  while (i < s.size()) {
    const SeqScan scan = ScanSeq(s, i);
    if (scan.complete) {
      i += scan.len;
      continue;
    }
    out->append(s.data() + run_start, i - run_start);
    if (scan.at_end) return i;
    out->append(kReplacementChar);
    i += scan.len;
    run_start = i;
  }
  out->append(s.data() + run_start, i - run_start);
  return s.size();
}

void AppendUtf8Lossy(std::string_view s, std::string* out) {
  const size_t done = AppendUtf8LossyComplete(s, out);
  if (done < s.size()) out->append(kReplacementChar);  // one maximal subpart at the end
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const SeqScan scan = ScanSeq(s, i);
    if (!scan.complete) return false;
    i += scan.len;
  }
  return true;
}

uint32_t NextCodepoint(std::string_view s, size_t* i) {
  const SeqScan scan = ScanSeq(s, *i);
  if (!scan.complete) {
    *i += 1;
    return 0xFFFD;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + *i);
  *i += scan.len;
  switch (scan.len) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
             (p[3] & 0x3Fu);
  }
}

void AppendCodepoint(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const std::array<uint32_t, 256>& ByteToUnicode() {
  // GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other
  // 68 bytes to U+0100.. in byte order.
  static const std::array<uint32_t, 256> kMap = [] {
    std::array<uint32_t, 256> m{};
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      m[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
    return m;
  }();
  return kMap;
}

int UnicodeToByte(uint32_t cp) {
  static const std::array<int16_t, 324> kInverse = [] {
    std::array<int16_t, 324> inv;
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) inv[ByteToUnicode()[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < kInverse.size() ? kInverse[cp] : -1;
}

bool ByteLevelDecode(std::string_view s, std::string* out) {
  const size_t mark = out->size();
  for (size_t i = 0; i < s.size();) {
    const int b = UnicodeToByte(NextCodepoint(s, &i));
    if (b < 0) {
      out->resize(mark);
      return false;
    }
    out->push_back(static_cast<char>(b));
  }
  return true;
}

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) AppendCodepoint(ByteToUnicode()[c], &out);
  return out;
}

bool IsWhitespace(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool IsNumeric(uint32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

bool IsAlphanumeric(uint32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) || IsNumeric(cp);
}

bool IsPunctuation(uint32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

absl::StatusOr<std::string> Normalize(std::string_view s, NormalForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNFC:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalForm::kNFD:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalForm::kNFKC:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalForm::kNFKD:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &result,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unicode normalization failed: ", utf8proc_errmsg(n)));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result, &std::free);
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
}

std::string Lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    AppendCodepoint(static_cast<uint32_t>(
                        utf8proc_tolower(static_cast<utf8proc_int32_t>(NextCodepoint(s, &i)))),
                    &out);
  }
  return out;
}

}  // namespace tokenmill::tokenizer_internal
