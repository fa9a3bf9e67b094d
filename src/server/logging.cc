#include "server/logging.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "tokenmill/metrics/request_record.h"

namespace tokenmill {

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const double unix_s = std::chrono::duration<double>(msg.time.time_since_epoch()).count();
  nlohmann::ordered_json j;
  j["time"] = metrics::FormatRfc3339(unix_s);
  const auto level = spdlog::level::to_string_view(msg.level);
  j["level"] = std::string(level.data(), level.size());
  j["logger"] = std::string(msg.logger_name.data(), msg.logger_name.size());
  j["thread"] = msg.thread_id;
  j["msg"] = std::string(msg.payload.data(), msg.payload.size());
  const std::string line =
      j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  dest.append(line.data(), line.data() + line.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

absl::Status ConfigureLogging(const std::string& format, const std::string& level) {
  std::shared_ptr<spdlog::logger> logger = spdlog::default_logger();
  if (format == "json") {
    logger->set_formatter(std::make_unique<JsonLogFormatter>());
  } else if (format == "text") {
    logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("log format: must be text or json, got '", format, "'"));
  }
  if (!level.empty()) {
    const spdlog::level::level_enum l = spdlog::level::from_str(level);
    if (l == spdlog::level::off && level != "off") {
      return absl::InvalidArgumentError(absl::StrCat("log level: unknown '", level, "'"));
    }
    logger->set_level(l);
  }
  return absl::OkStatus();
}

}  // namespace tokenmill
