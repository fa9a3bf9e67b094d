#include "tokenmill/tokenizer/detokenizer.h"

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"

namespace tokenmill {

using tokenizer_internal::AppendUtf8Lossy;
using tokenizer_internal::AppendUtf8LossyComplete;
using tokenizer_internal::IsValidUtf8;
using tokenizer_internal::kReplacementChar;

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer),
      rules_(tokenizer.decode_rules()),
      skip_special_(skip_special),
      strip_left_(rules_.num_strip_leading_spaces) {}

absl::Status IncrementalDetokenizer::Prime(std::span<const int32_t> ids) {
  std::string discard;
  for (int32_t id : ids) {
    absl::Status s = Add(id, &discard);
    if (!s.ok()) return s;
  }
  Finish(&discard);
  return absl::OkStatus();
}

void IncrementalDetokenizer::AppendText(std::string_view bytes) {
  if (!strip_done_) {
    size_t i = 0;
    while (i < bytes.size() && strip_left_ > 0 && bytes[i] == ' ') {
      ++i;
      --strip_left_;
    }
    if (i < bytes.size() || strip_left_ == 0) strip_done_ = true;
    bytes.remove_prefix(i);
  }
  pending_.append(bytes);
}

void IncrementalDetokenizer::FlushRun() {
  if (num_run_tokens_ == 0) return;
  if (IsValidUtf8(run_)) {
    AppendText(run_);
  } else {
    std::string replaced;
    for (int i = 0; i < num_run_tokens_; ++i) replaced.append(kReplacementChar);
    AppendText(replaced);
  }
  run_.clear();
  num_run_tokens_ = 0;
}

absl::Status IncrementalDetokenizer::Add(int32_t id, std::string* out) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is out of range [0, ", tokenizer_.vocab_size(), ")"));
  }
  if (skip_special_ && tokenizer_.IsSpecial(id)) return absl::OkStatus();
  const std::string_view bytes = tokenizer_.TokenBytes(id, num_decoded_ == 0);
  ++num_decoded_;
  if (rules_.byte_fallback_runs && tokenizer_.IsByteToken(id)) {
    // HF's ByteFallback judges a run as a whole: a later bad byte turns the bytes before
    // it into U+FFFD too, so nothing of a run is final until the run ends.
    run_.append(bytes);
    ++num_run_tokens_;
    return absl::OkStatus();
  }
  FlushRun();
  AppendText(bytes);
  const size_t done = AppendUtf8LossyComplete(pending_, out);
  pending_.erase(0, done);
  return absl::OkStatus();
}

void IncrementalDetokenizer::Finish(std::string* out) {
  FlushRun();
  AppendUtf8Lossy(pending_, out);
  pending_.clear();
}

}  // namespace tokenmill
