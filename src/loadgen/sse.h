// Server-sent events (the text/event-stream format of the WHATWG HTML spec, as OpenAI-
// compatible servers stream completions): bytes in, one callback per event's data.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace tokenmill::loadgen {

class SseParser {
 public:
  // Called with the event's data (its "data:" lines joined by '\n'); events without data
  // (comments, keep-alives) are skipped. Return false to stop parsing.
  using OnEvent = std::function<bool(const std::string& data)>;
  explicit SseParser(OnEvent on_event) : on_event_(std::move(on_event)) {}

  // Feeds bytes as they arrive, in pieces of any size; false once a callback said stop.
  bool Feed(std::string_view bytes);
  // End of stream: dispatches a final event that lacked its blank line (lenient, as
  // browsers are not but servers sometimes need).
  bool Finish();

 private:
  bool ProcessLine(std::string_view line);
  bool Dispatch();

  OnEvent on_event_;
  std::string buffer_;  // bytes after the last complete line
  std::string data_;
  bool has_data_ = false;
  bool stopped_ = false;
};

}  // namespace tokenmill::loadgen
