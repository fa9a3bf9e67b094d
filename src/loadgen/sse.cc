#include "loadgen/sse.h"

namespace tokenmill::loadgen {

bool SseParser::Feed(std::string_view bytes) {
  if (stopped_) return false;
  buffer_.append(bytes);
  size_t start = 0;
  // Lines end in "\r\n", "\n" or "\r"; a '\r' as the buffer's last byte may be the first
  // half of "\r\n", so it waits for the next piece.
  while (start < buffer_.size()) {
    const size_t eol = buffer_.find_first_of("\r\n", start);
    if (eol == std::string::npos) break;
    if (buffer_[eol] == '\r' && eol + 1 == buffer_.size()) break;
    const std::string_view line(buffer_.data() + start, eol - start);
    size_t next = eol + 1;
    if (buffer_[eol] == '\r' && buffer_[eol + 1] == '\n') ++next;
    if (!ProcessLine(line)) {
      stopped_ = true;
      return false;
    }
    start = next;
  }
  buffer_.erase(0, start);
  return true;
}

bool SseParser::Finish() {
  if (stopped_) return false;
  if (!buffer_.empty()) {
    const std::string line = buffer_;
    buffer_.clear();
    if (!ProcessLine(line.back() == '\r' ? std::string_view(line).substr(0, line.size() - 1)
                                         : std::string_view(line))) {
      return false;
    }
  }
  return Dispatch();
}

bool SseParser::ProcessLine(std::string_view line) {
  if (line.empty()) return Dispatch();
  if (line[0] == ':') return true;  // comment
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  // "event", "id" and "retry" do not matter to a completion stream.
  return true;
}

bool SseParser::Dispatch() {
  if (!has_data_) return true;
  has_data_ = false;
  const std::string data = std::move(data_);
  data_.clear();
  return on_event_(data);
}

}  // namespace tokenmill::loadgen
