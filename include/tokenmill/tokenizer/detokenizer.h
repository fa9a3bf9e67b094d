// Incremental detokenizer for streaming: feed generated ids one at a time and get text
// as soon as it is final. The concatenation of everything it returns (Add... then
// Finish) equals Tokenizer::Decode of the same ids: a UTF-8 character is never split
// (CJK, emoji, byte-fallback runs such as <0xE4><0xBD><0xA0>), and SentencePiece's
// leading-space rule applies to the first decoded token only. Emitted text is never
// revised, so stop strings can be matched on it directly.
// Not thread-safe: one instance per sequence. The tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false);

  // Feeds context (e.g. the prompt) without emitting its text, so the first generated
  // token is decoded as a continuation (its leading space kept). Call before Add.
  absl::Status Prime(std::span<const int32_t> ids);
  // Feeds one id and appends the text that became final to `out` (possibly nothing).
  // An out-of-range id is InvalidArgument naming it; the state is then unchanged.
  absl::Status Add(int32_t id, std::string* out);
  // Appends the held-back remainder (an unfinished byte run or UTF-8 sequence becomes
  // U+FFFD as Decode does). Further Adds start a new character but keep the state.
  void Finish(std::string* out);

  // Bytes held back because they may still change (incomplete character or byte run).
  size_t num_pending_bytes() const { return pending_.size() + run_.size(); }

 private:
  void FlushRun();
  void AppendText(std::string_view bytes);

  const Tokenizer& tokenizer_;
  const DecodeRules rules_;
  const bool skip_special_;
  int64_t num_decoded_ = 0;  // tokens that reached the decoder (skipped ones excluded)
  int strip_left_;           // leading spaces still to strip
  bool strip_done_ = false;  // a non-space character has been seen
  std::string pending_;      // bytes after stripping, not yet emitted
  std::string run_;          // bytes of the current byte-token run
  int num_run_tokens_ = 0;
};

}  // namespace tokenmill
