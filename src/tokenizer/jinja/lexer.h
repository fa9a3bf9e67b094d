// Tokenizer for Jinja templates, configured as Hugging Face transformers configures
// jinja2: trim_blocks, lstrip_blocks, keep_trailing_newline=False, default delimiters.
// Whitespace control ({%- -%} {{- -}} {#- -#}, and '+' to opt out) is resolved here, so
// text tokens already hold exactly the bytes Python jinja2 would emit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenmill::jinja {

enum class TokenType {
  kText,        // literal template data
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text holds the unescaped value
  kInteger,
  kFloat,
  kOperator,  // text holds the operator: "+", "//", "==", "(", ...
  kEof,
};

struct Token {
  TokenType type = TokenType::kEof;
  std::string text;
  int line = 1;
  int column = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// InvalidArgument naming line and column for malformed input (unterminated tag, string or
// comment, unexpected character, unbalanced brackets). The last token is always kEof.
absl::StatusOr<std::vector<Token>> Tokenize(const std::string& source);

}  // namespace tokenmill::jinja
