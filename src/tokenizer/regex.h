// A PCRE2 regular expression compiled once (UTF + UCP, JIT when available) and matched
// from many threads: match data is per call, the compiled code is shared and immutable.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenmill::tokenizer_internal {

class Regex {
 public:
  // `pattern` is in the Oniguruma/Python dialect that tokenizer files use; the few
  // constructs PCRE2 reads differently are rewritten (see regex.cc).
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping leftmost matches in `text` as [begin, end) byte offsets. Empty
  // matches are skipped. Requires valid UTF-8.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace tokenmill::tokenizer_internal
