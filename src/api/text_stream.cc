#include "tokenmill/api/text_stream.h"

#include <algorithm>

namespace tokenmill {
namespace {

// Largest n <= len such that s[0, n) ends on a UTF-8 character boundary.
size_t Utf8Boundary(const std::string& s, size_t len) {
  while (len > 0 && len < s.size() && (static_cast<unsigned char>(s[len]) & 0xC0) == 0x80) --len;
  return len;
}

}  // namespace

SequenceTextStream::SequenceTextStream(const Tokenizer* tokenizer,
                                       std::vector<std::string> stop_strings, bool skip_special)
    : stop_strings_(std::move(stop_strings)) {
  if (tokenizer != nullptr) {
    detok_ = std::make_unique<IncrementalDetokenizer>(*tokenizer, skip_special);
  }
  std::erase_if(stop_strings_, [](const std::string& s) { return s.empty(); });
  for (const std::string& s : stop_strings_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

absl::Status SequenceTextStream::Prime(std::span<const int32_t> prompt_ids) {
  if (detok_ == nullptr) return absl::OkStatus();
  return detok_->Prime(prompt_ids);
}

absl::StatusOr<bool> SequenceTextStream::Add(int32_t id, std::string* out) {
  if (stopped_ || detok_ == nullptr) return stopped_;
  const size_t old_size = held_.size();
  if (absl::Status s = detok_->Add(id, &held_); !s.ok()) return s;
  if (!stop_strings_.empty() && held_.size() > old_size) {
    // A stop string can only complete inside the new text or straddle into it.
    const size_t from = old_size >= max_stop_len_ ? old_size - max_stop_len_ + 1 : 0;
    size_t first = std::string::npos;
    for (const std::string& stop : stop_strings_) {
      const size_t pos = held_.find(stop, from);
      if (pos < first) first = pos;
    }
    if (first != std::string::npos) {
      out->append(held_, 0, first);
      held_.clear();
      stopped_ = true;
      return true;
    }
  }
  EmitSafePrefix(out);
  return false;
}

void SequenceTextStream::EmitSafePrefix(std::string* out) {
  // Keep the last max_stop_len - 1 bytes: they may be the start of a stop string.
  const size_t keep = max_stop_len_ > 0 ? max_stop_len_ - 1 : 0;
  if (held_.size() <= keep) return;
  const size_t n = Utf8Boundary(held_, held_.size() - keep);
  out->append(held_, 0, n);
  held_.erase(0, n);
}

void SequenceTextStream::Finish(std::string* out) {
  if (stopped_ || detok_ == nullptr) return;
  std::string tail;
  detok_->Finish(&tail);
  held_ += tail;
  size_t first = std::string::npos;
  for (const std::string& stop : stop_strings_) first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    held_.resize(first);
    stopped_ = true;
  }
  out->append(held_);
  held_.clear();
}

}  // namespace tokenmill
