// The daemon's log output: spdlog to stderr, as text or as one JSON object per line
// ({"time", "level", "logger", "thread", "msg"}) for log collectors.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "spdlog/formatter.h"

namespace tokenmill {

// Formats a record as {"time":"2024-06-01T12:00:00.123456Z","level":"info",
// "logger":"tokenmill","thread":123,"msg":"..."} (RFC 3339 UTC; msg JSON-escaped).
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Sets the default logger's format ("text" or "json") and, unless `level` is "", its level.
absl::Status ConfigureLogging(const std::string& format, const std::string& level);

}  // namespace tokenmill
