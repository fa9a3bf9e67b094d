// Text of one generated sequence as it streams: incremental detokenization plus stop
// strings (OpenAI semantics: the text ends before the first stop string, which is not
// included). Text that could still turn into a stop string is held back, so nothing that
// is emitted is ever taken back. Runs on front-end threads, never the engine's.
// Not thread-safe: one instance per sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/tokenizer/detokenizer.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {

class SequenceTextStream {
 public:
  // `tokenizer` may be null (then no text and no stop strings); it must outlive this.
  SequenceTextStream(const Tokenizer* tokenizer, std::vector<std::string> stop_strings,
                     bool skip_special = true);

  // Feeds the prompt as context so the first generated token decodes as a continuation.
  absl::Status Prime(std::span<const int32_t> prompt_ids);
  // Feeds one generated id and appends final text to `out`. Returns true when a stop
  // string completed: `out` then ends just before it, and later ids must be dropped.
  absl::StatusOr<bool> Add(int32_t id, std::string* out);
  // End of the sequence: appends whatever was held back (unless stopped).
  void Finish(std::string* out);
  bool stopped() const { return stopped_; }

 private:
  void EmitSafePrefix(std::string* out);

  std::unique_ptr<IncrementalDetokenizer> detok_;
  std::vector<std::string> stop_strings_;
  size_t max_stop_len_ = 0;
  std::string held_;  // detokenized, not yet emitted
  bool stopped_ = false;
};

}  // namespace tokenmill
