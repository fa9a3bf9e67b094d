#include "tokenizer/jinja/py_text.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "utf8proc.h"

namespace tokenmill::jinja {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// Decodes one code point at s[*i], advancing *i; malformed sequences yield U+FFFD and
// consume one byte, like Python's errors="replace".
char32_t NextCodepoint(const std::string& s, size_t* i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char c = p[*i];
  if (c < 0x80) {
    ++*i;
    return c;
  }
  int len = 0;
  char32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    ++*i;
    return kReplacement;
  }
  if (*i + len > n) {
    ++*i;
    return kReplacement;
  }
  for (int k = 1; k < len; ++k) {
    const unsigned char cc = p[*i + k];
    if ((cc & 0xC0) != 0x80) {
      ++*i;
      return kReplacement;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  const bool overlong =
      (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
  if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++*i;
    return kReplacement;
  }
  *i += len;
  return cp;
}

bool IsCased(char32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

char32_t ToUpper(char32_t cp) {
  return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp)));
}
char32_t ToLower(char32_t cp) {
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
}
char32_t ToTitle(char32_t cp) {
  return static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(cp)));
}

bool IsPrintable(char32_t cp) {
  if (cp == ' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

// The unconditional one-to-many mappings of Unicode SpecialCasing.txt that CPython applies
// (utf8proc only knows the one-to-one ones). Returns null when the simple mapping applies.
enum class CaseKind { kUpper, kLower, kTitle };
const char* SpecialCase(char32_t cp, CaseKind kind) {
  struct Entry {
    char32_t cp;
    const char* upper;
    const char* title;
  };
  static constexpr Entry kEntries[] = {
      {0x00DF, "SS", "Ss"}, {0xFB00, "FF", "Ff"},   {0xFB01, "FI", "Fi"},
      {0xFB02, "FL", "Fl"}, {0xFB03, "FFI", "Ffi"}, {0xFB04, "FFL", "Ffl"},
      {0xFB05, "ST", "St"}, {0xFB06, "ST", "St"},   {0x0149, "\xCA\xBCN", "\xCA\xBCN"},
  };
  if (kind == CaseKind::kLower) return cp == 0x0130 ? "i\xCC\x87" : nullptr;
  for (const Entry& e : kEntries) {
    if (e.cp == cp) return kind == CaseKind::kUpper ? e.upper : e.title;
  }
  return nullptr;
}

void AppendCased(char32_t cp, CaseKind kind, std::string* out) {
  if (const char* special = SpecialCase(cp, kind)) {
    out->append(special);
    return;
  }
  AppendUtf8(kind == CaseKind::kUpper   ? ToUpper(cp)
             : kind == CaseKind::kLower ? ToLower(cp)
                                        : ToTitle(cp),
             out);
}

std::string MapCase(const std::string& s, CaseKind kind) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) AppendCased(NextCodepoint(s, &i), kind, &out);
  return out;
}

}  // namespace

std::u32string DecodeUtf8(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(NextCodepoint(s, &i));
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
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

std::string EncodeUtf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) AppendUtf8(cp, &out);
  return out;
}

bool IsAscii(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

int64_t CodepointLength(const std::string& s) {
  if (IsAscii(s)) return static_cast<int64_t>(s.size());
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) NextCodepoint(s, &i);
  return n;
}

bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t before = i;
    const char32_t cp = NextCodepoint(s, &i);
    // A genuine U+FFFD is 3 bytes; a replacement for a bad byte consumed exactly one.
    if (cp == kReplacement && i - before == 1) return false;
  }
  return true;
}

bool IsPyWhitespace(char32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string PyStrip(const std::string& s, const std::optional<std::string>& chars, StripSide side) {
  const std::u32string cps = DecodeUtf8(s);
  const std::u32string set = chars ? DecodeUtf8(*chars) : std::u32string();
  auto strip_me = [&](char32_t cp) {
    return chars ? set.find(cp) != std::u32string::npos : IsPyWhitespace(cp);
  };
  size_t begin = 0;
  size_t end = cps.size();
  if (side != StripSide::kRight) {
    while (begin < end && strip_me(cps[begin])) ++begin;
  }
  if (side != StripSide::kLeft) {
    while (end > begin && strip_me(cps[end - 1])) --end;
  }
  return EncodeUtf8(cps.substr(begin, end - begin));
}

std::vector<std::string> PySplit(const std::string& s, const std::optional<std::string>& sep,
                                 int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        const size_t hit = s.find(*sep, pos);
        if (hit == std::string::npos) break;
        parts.push_back(s.substr(pos, hit - pos));
        pos = hit + sep->size();
      }
      parts.push_back(s.substr(pos));
      return parts;
    }
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string::npos) break;
      parts.insert(parts.begin(), s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
    }
    parts.insert(parts.begin(), s.substr(0, end));
    return parts;
  }
  // Whitespace split: runs of whitespace separate, leading/trailing runs are dropped.
  const std::u32string cps = DecodeUtf8(s);
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < cps.size() && IsPyWhitespace(cps[i])) ++i;
      if (i == cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        size_t end = cps.size();
        while (end > i && IsPyWhitespace(cps[end - 1])) --end;
        parts.push_back(EncodeUtf8(cps.substr(i, end - i)));
        break;
      }
      size_t j = i;
      while (j < cps.size() && !IsPyWhitespace(cps[j])) ++j;
      parts.push_back(EncodeUtf8(cps.substr(i, j - i)));
      i = j;
    }
    return parts;
  }
  size_t end = cps.size();
  while (true) {
    while (end > 0 && IsPyWhitespace(cps[end - 1])) --end;
    if (end == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      size_t begin = 0;
      while (begin < end && IsPyWhitespace(cps[begin])) ++begin;
      parts.insert(parts.begin(), EncodeUtf8(cps.substr(begin, end - begin)));
      break;
    }
    size_t begin = end;
    while (begin > 0 && !IsPyWhitespace(cps[begin - 1])) --begin;
    parts.insert(parts.begin(), EncodeUtf8(cps.substr(begin, end - begin)));
    end = begin;
  }
  return parts;
}

std::vector<std::string> PySplitLines(const std::string& s) {
  const std::u32string cps = DecodeUtf8(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const bool is_break = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C ||
                          c == 0x1D || c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!is_break) continue;
    lines.push_back(EncodeUtf8(cps.substr(start, i - start)));
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < cps.size()) lines.push_back(EncodeUtf8(cps.substr(start)));
  return lines;
}

std::string PyReplace(const std::string& s, const std::string& old_text,
                      const std::string& new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new` before every code point and at the end.
    const std::u32string cps = DecodeUtf8(s);
    int64_t done = 0;
    for (char32_t cp : cps) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      AppendUtf8(cp, &out);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(old_text, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += new_text;
    pos = hit + old_text.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string PyUpper(const std::string& s) { return MapCase(s, CaseKind::kUpper); }
std::string PyLower(const std::string& s) { return MapCase(s, CaseKind::kLower); }

std::string PyTitle(const std::string& s) {
  std::string out;
  bool previous_cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = NextCodepoint(s, &i);
    AppendCased(cp, previous_cased ? CaseKind::kLower : CaseKind::kTitle, &out);
    previous_cased = IsCased(cp);
  }
  return out;
}

std::string PyCapitalize(const std::string& s) {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = NextCodepoint(s, &i);
    AppendCased(cp, first ? CaseKind::kTitle : CaseKind::kLower, &out);
    first = false;
  }
  return out;
}

std::string JinjaTitle(const std::string& s) {
  // jinja2.filters.do_title: split on runs of [-\s({\[<], then item[0].upper() +
  // item[1:].lower() for every piece (separators included, where it is a no-op).
  std::string out;
  bool at_word_start = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = NextCodepoint(s, &i);
    const bool is_separator =
        cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || IsPyWhitespace(cp);
    if (is_separator) {
      AppendUtf8(cp, &out);
      at_word_start = true;
      continue;
    }
    AppendCased(cp, at_word_start ? CaseKind::kUpper : CaseKind::kLower, &out);
    at_word_start = false;
  }
  return out;
}

std::string PyStringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = NextCodepoint(s, &i);
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (IsPrintable(cp)) {
      AppendUtf8(cp, &out);
    } else {
      char buf[16];
      if (cp < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(cp));
      } else if (cp < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(cp));
      }
      out += buf;
    }
  }
  out.push_back(quote);
  return out;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  // Shortest round-trip digits in scientific form: "-d.ddde+XX".
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exponent = std::stoi(sci.substr(e_pos + 1));
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  if (exponent < -4 || exponent >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+',
                  exponent < 0 ? -exponent : exponent);
    return out + exp_buf;
  }
  const int point = exponent + 1;  // digits before the decimal point
  std::string out = sign;
  if (point <= 0) {
    out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
  } else if (static_cast<size_t>(point) >= digits.size()) {
    out += digits + std::string(point - digits.size(), '0') + ".0";
  } else {
    out += digits.substr(0, point) + "." + digits.substr(point);
  }
  return out;
}

}  // namespace tokenmill::jinja
