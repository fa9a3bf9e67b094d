#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

// jinja2 splits the source on \r\n, \r and \n, drops one trailing empty line
// (keep_trailing_newline=False) and joins with \n.
std::string NormalizeNewlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Length in bytes of the Python whitespace code point at s[i], 0 if none.
size_t WhitespaceAt(const std::string& s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return IsPyWhitespace(c) ? 1 : 0;
  size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
  if (i + len > s.size()) return 0;
  const std::u32string cp = DecodeUtf8(s.substr(i, len));
  return cp.size() == 1 && IsPyWhitespace(cp[0]) ? len : 0;
}

size_t SkipWhitespace(const std::string& s, size_t i) {
  while (i < s.size()) {
    const size_t n = WhitespaceAt(s, i);
    if (n == 0) break;
    i += n;
  }
  return i;
}

bool IsNameStart(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool IsNameChar(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      size_t start = src_.find('{', pos_);
      while (start != std::string::npos && start + 1 < src_.size() && src_[start + 1] != '{' &&
             src_[start + 1] != '%' && src_[start + 1] != '#') {
        start = src_.find('{', start + 1);
      }
      if (start == std::string::npos || start + 1 >= src_.size()) {
        EmitText(src_.substr(pos_), pos_);
        break;
      }
      const char kind = src_[start + 1];
      const char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
      std::string text = src_.substr(pos_, start - pos_);
      ApplyLeftStrip(&text, sign, kind != '{', line_starting);
      EmitText(std::move(text), pos_);
      pos_ = start + 2 + (sign == '-' || sign == '+' ? 1 : 0);
      if (kind == '#') {
        TM_RETURN_IF_ERROR(SkipComment(start));
      } else if (kind == '%' && TryRawBlock()) {
        TM_RETURN_IF_ERROR(LexRawBody(start));
      } else {
        TM_RETURN_IF_ERROR(LexTag(kind == '%', start));
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    Token eof;
    eof.type = TokenType::kEof;
    SetPosition(&eof, src_.size());
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  absl::Status Error(size_t offset, const std::string& message) const {
    int line = 0;
    int column = 0;
    Position(offset, &line, &column);
    return absl::InvalidArgumentError(
        absl::StrCat("template syntax error at line ", line, ", column ", column, ": ", message));
  }

  void Position(size_t offset, int* line, int* column) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t index = static_cast<size_t>(it - line_starts_.begin()) - 1;
    *line = static_cast<int>(index) + 1;
    *column = static_cast<int>(offset - line_starts_[index]) + 1;
  }

  void SetPosition(Token* token, size_t offset) const {
    Position(offset, &token->line, &token->column);
  }

  void Emit(TokenType type, std::string text, size_t offset) {
    Token token;
    token.type = type;
    token.text = std::move(text);
    SetPosition(&token, offset);
    tokens_.push_back(std::move(token));
  }

  void EmitText(std::string text, size_t offset) {
    if (!text.empty()) Emit(TokenType::kText, std::move(text), offset);
  }

  // '-' strips all whitespace before the tag; otherwise lstrip_blocks removes the
  // indentation of a block or comment tag that starts its line.
  static void ApplyLeftStrip(std::string* text, char sign, bool is_block_or_comment,
                             bool line_starting) {
    if (sign == '-') {
      *text = PyStrip(*text, std::nullopt, StripSide::kRight);
      return;
    }
    if (sign == '+' || !is_block_or_comment) return;
    const size_t l_pos = text->rfind('\n') + 1;  // npos + 1 == 0
    if (l_pos == 0 && !line_starting) return;
    if (l_pos == text->size()) return;
    if (SkipWhitespace(*text, l_pos) == text->size()) text->resize(l_pos);
  }

  // After a block or comment end: '-' eats all whitespace, '+' nothing, and plain ends eat
  // one newline (trim_blocks).
  void ApplyRightStrip(char sign) {
    if (sign == '-') {
      pos_ = SkipWhitespace(src_, pos_);
    } else if (sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  absl::Status SkipComment(size_t start) {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) return Error(start, "missing end of comment tag");
    const char sign =
        end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : '\0';
    pos_ = end + 2;
    ApplyRightStrip(sign);
    return absl::OkStatus();
  }

  // At pos_ (after "{%" and its sign): "\s*raw\s*" then "%}" or "-%}"?
  bool TryRawBlock() {
    size_t i = SkipWhitespace(src_, pos_);
    if (src_.compare(i, 3, "raw") != 0) return false;
    i = SkipWhitespace(src_, i + 3);
    if (src_.compare(i, 3, "-%}") == 0) {
      pos_ = SkipWhitespace(src_, i + 3);
      return true;
    }
    if (src_.compare(i, 2, "%}") == 0) {
      pos_ = i + 2;
      return true;
    }
    return false;
  }

  absl::Status LexRawBody(size_t start) {
    for (size_t search = pos_;;) {
      const size_t tag = src_.find("{%", search);
      if (tag == std::string::npos) return Error(start, "missing end of raw directive");
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      size_t i = SkipWhitespace(src_, tag + 2 + (sign == '-' || sign == '+' ? 1 : 0));
      if (src_.compare(i, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      i = SkipWhitespace(src_, i + 6);
      char end_sign = '\0';
      if (src_.compare(i, 3, "-%}") == 0 || src_.compare(i, 3, "+%}") == 0) {
        end_sign = src_[i];
        ++i;
      }
      if (src_.compare(i, 2, "%}") != 0) {
        search = tag + 2;
        continue;
      }
      std::string text = src_.substr(pos_, tag - pos_);
      ApplyLeftStrip(&text, sign, /*is_block_or_comment=*/true, /*line_starting=*/false);
      EmitText(std::move(text), pos_);
      pos_ = i + 2;
      ApplyRightStrip(end_sign);
      return absl::OkStatus();
    }
  }

  absl::Status LexTag(bool is_block, size_t start) {
    Emit(is_block ? TokenType::kBlockBegin : TokenType::kVarBegin, "", start);
    std::vector<char> balancing;
    while (true) {
      pos_ = SkipWhitespace(src_, pos_);
      if (pos_ >= src_.size()) return Error(start, "unexpected end of template inside a tag");
      if (balancing.empty() && TryTagEnd(is_block)) return absl::OkStatus();
      TM_RETURN_IF_ERROR(LexTagToken(&balancing));
    }
  }

  bool TryTagEnd(bool is_block) {
    const char* end = is_block ? "%}" : "}}";
    const size_t at = pos_;
    char sign = '\0';
    if ((src_[pos_] == '-' || (is_block && src_[pos_] == '+')) &&
        src_.compare(pos_ + 1, 2, end) == 0) {
      sign = src_[pos_];
      pos_ += 3;
    } else if (src_.compare(pos_, 2, end) == 0) {
      pos_ += 2;
    } else {
      return false;
    }
    Emit(is_block ? TokenType::kBlockEnd : TokenType::kVarEnd, "", at);
    if (is_block) {
      ApplyRightStrip(sign);
    } else if (sign == '-') {
      pos_ = SkipWhitespace(src_, pos_);
    }
    return true;
  }

  absl::Status LexTagToken(std::vector<char>* balancing) {
    const unsigned char c = static_cast<unsigned char>(src_[pos_]);
    if (std::isdigit(c)) return LexNumber();
    if (IsNameStart(c)) {
      const size_t begin = pos_;
      while (pos_ < src_.size() && IsNameChar(static_cast<unsigned char>(src_[pos_]))) ++pos_;
      Emit(TokenType::kName, src_.substr(begin, pos_ - begin), begin);
      return absl::OkStatus();
    }
    if (c == '\'' || c == '"') return LexString();
    static const char* kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                       "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                       ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
    for (const char* op : kOperators) {
      const size_t len = std::char_traits<char>::length(op);
      if (src_.compare(pos_, len, op, len) != 0) continue;
      const std::string text(op, len);
      TM_RETURN_IF_ERROR(Balance(text, balancing));
      Emit(TokenType::kOperator, text, pos_);
      pos_ += text.size();
      return absl::OkStatus();
    }
    return Error(pos_, absl::StrCat("unexpected char '", std::string(1, src_[pos_]), "'"));
  }

  absl::Status Balance(const std::string& op, std::vector<char>* balancing) {
    if (op == "(" || op == "[" || op == "{") {
      balancing->push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
    } else if (op == ")" || op == "]" || op == "}") {
      if (balancing->empty()) return Error(pos_, absl::StrCat("unexpected '", op, "'"));
      if (balancing->back() != op[0]) {
        return Error(pos_, absl::StrCat("unexpected '", op, "', expected '",
                                        std::string(1, balancing->back()), "'"));
      }
      balancing->pop_back();
    }
    return absl::OkStatus();
  }

  size_t ScanDigits(size_t i) const {  // digits with single '_' separators
    while (i < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[i])) ||
                               (src_[i] == '_' && i + 1 < src_.size() &&
                                std::isdigit(static_cast<unsigned char>(src_[i + 1]))))) {
      ++i;
    }
    return i;
  }

  absl::Status LexNumber();
  absl::Status LexString();

  std::string src_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

absl::Status Lexer::LexNumber() {
  const size_t begin = pos_;
  const bool after_dot = begin > 0 && src_[begin - 1] == '.';
  size_t i = ScanDigits(pos_);
  bool is_float = false;
  if (!after_dot) {
    size_t j = i;
    if (j + 1 < src_.size() && src_[j] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[j + 1]))) {
      j = ScanDigits(j + 1);
      is_float = true;
    }
    if (j < src_.size() && (src_[j] == 'e' || src_[j] == 'E')) {
      size_t k = j + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        j = ScanDigits(k);
        is_float = true;
      }
    }
    if (is_float) i = j;
  }
  std::string digits;
  for (size_t k = begin; k < i; ++k) {
    if (src_[k] != '_') digits.push_back(src_[k]);
  }
  Token token;
  token.text = src_.substr(begin, i - begin);
  SetPosition(&token, begin);
  if (is_float) {
    token.type = TokenType::kFloat;
    token.float_value = std::strtod(digits.c_str(), nullptr);
  } else {
    int base = 10;
    size_t skip = 0;
    if (digits.size() > 1 && digits[0] == '0') {
      const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(digits[1])));
      base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
      if (base != 10) {
        skip = 2;
        // The prefixed forms carry letters or '_' the decimal scan did not take.
        while (i < src_.size() &&
               (std::isxdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) {
          if (src_[i] != '_') digits.push_back(src_[i]);
          ++i;
        }
      }
    }
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(digits.c_str() + skip, &end, base);
    if (errno == ERANGE || end == digits.c_str() + skip || *end != '\0') {
      return Error(begin, "integer literal out of range or malformed");
    }
    token.type = TokenType::kInteger;
    token.int_value = v;
    token.text = src_.substr(begin, i - begin);
  }
  tokens_.push_back(std::move(token));
  pos_ = i;
  return absl::OkStatus();
}

// Python's "unicode-escape" decoding of a string literal body.
absl::Status Lexer::LexString() {
  const size_t begin = pos_;
  const char quote = src_[pos_++];
  std::string value;
  while (true) {
    if (pos_ >= src_.size()) return Error(begin, "unterminated string literal");
    const char c = src_[pos_++];
    if (c == quote) break;
    if (c != '\\') {
      value.push_back(c);
      continue;
    }
    if (pos_ >= src_.size()) return Error(begin, "unterminated string literal");
    const char e = src_[pos_++];
    auto hex = [&](int n) -> absl::StatusOr<char32_t> {
      if (pos_ + n > src_.size()) return Error(pos_, "truncated \\x/\\u escape");
      char32_t cp = 0;
      for (int k = 0; k < n; ++k) {
        const char h = src_[pos_ + k];
        if (!std::isxdigit(static_cast<unsigned char>(h))) {
          return Error(pos_, "truncated \\x/\\u escape");
        }
        cp = cp * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                 ? h - '0'
                                                 : std::tolower(h) - 'a' + 10);
      }
      pos_ += n;
      return cp;
    };
    switch (e) {
      case '\n':
        break;  // line continuation
      case '\\':
        value.push_back('\\');
        break;
      case '\'':
        value.push_back('\'');
        break;
      case '"':
        value.push_back('"');
        break;
      case 'a':
        value.push_back('\a');
        break;
      case 'b':
        value.push_back('\b');
        break;
      case 'f':
        value.push_back('\f');
        break;
      case 'n':
        value.push_back('\n');
        break;
      case 'r':
        value.push_back('\r');
        break;
      case 't':
        value.push_back('\t');
        break;
      case 'v':
        value.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        TM_ASSIGN_OR_RETURN(char32_t cp, hex(e == 'x' ? 2 : e == 'u' ? 4 : 8));
        if (cp > 0x10FFFF) return Error(pos_, "illegal Unicode character in escape");
        AppendUtf8(cp, &value);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          char32_t cp = static_cast<char32_t>(e - '0');
          for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7';
               ++k) {
            cp = cp * 8 + static_cast<char32_t>(src_[pos_++] - '0');
          }
          AppendUtf8(cp, &value);
        } else {
          value.push_back('\\');  // unknown escapes stay as written
          value.push_back(e);
        }
    }
  }
  Emit(TokenType::kString, std::move(value), begin);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(const std::string& source) {
  Lexer lexer(NormalizeNewlines(source));
  return lexer.Run();
}

}  // namespace tokenmill::jinja
