// Python `str` semantics on UTF-8 strings, for the Jinja interpreter: templates index,
// slice, strip and case-map by code point exactly as CPython does, so these helpers decode
// UTF-8 (invalid bytes read as U+FFFD) and work on code points. Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tokenmill::jinja {

std::u32string DecodeUtf8(const std::string& s);
std::string EncodeUtf8(const std::u32string& s);
void AppendUtf8(char32_t cp, std::string* out);
// Number of code points (len() of the Python string).
int64_t CodepointLength(const std::string& s);
bool IsAscii(const std::string& s);
// True when `s` is well-formed UTF-8.
bool IsValidUtf8(const std::string& s);

// str.isspace() for one code point (also what Python's `re` calls \s).
bool IsPyWhitespace(char32_t cp);

// str.strip / lstrip / rstrip; `chars` unset strips Python whitespace.
enum class StripSide { kBoth, kLeft, kRight };
std::string PyStrip(const std::string& s, const std::optional<std::string>& chars, StripSide side);

// str.split(sep, maxsplit) / str.rsplit; `sep` unset splits on whitespace runs.
// Requires: sep, when set, is non-empty (the caller reports Python's ValueError).
std::vector<std::string> PySplit(const std::string& s, const std::optional<std::string>& sep,
                                 int64_t maxsplit, bool from_right);
// str.splitlines(keepends=False).
std::vector<std::string> PySplitLines(const std::string& s);
// str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(const std::string& s, const std::string& old_text,
                      const std::string& new_text, int64_t count);

std::string PyUpper(const std::string& s);
std::string PyLower(const std::string& s);
std::string PyTitle(const std::string& s);       // str.title()
std::string PyCapitalize(const std::string& s);  // str.capitalize()
// Jinja's `title` filter (capitalizes after whitespace, '-', '(', '{', '[', '<').
std::string JinjaTitle(const std::string& s);

// repr(str): quotes and escapes as CPython does.
std::string PyStringRepr(const std::string& s);
// repr(float) / str(float): shortest round-trip digits, Python's fixed/scientific switch.
std::string PyFloatRepr(double d);

}  // namespace tokenmill::jinja
