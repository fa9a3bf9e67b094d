#include "server/logging.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spdlog/details/log_msg.h"

namespace tokenmill {
namespace {

TEST(JsonLogFormatterTest, OneEscapedObjectPerLine) {
  JsonLogFormatter f;
  spdlog::details::log_msg msg("tokenmill", spdlog::level::warn,
                               "quote \" newline \n tab \t bad \xFF end");
  spdlog::memory_buf_t buf;
  f.format(msg, buf);
  const std::string line(buf.data(), buf.size());
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["logger"], "tokenmill");
  EXPECT_EQ(j["msg"], "quote \" newline \n tab \t bad \xEF\xBF\xBD end");
  const std::string time = j["time"];
  EXPECT_EQ(time.size(), 27u);  // 2024-06-01T12:00:00.123456Z
  EXPECT_EQ(time.back(), 'Z');
  EXPECT_TRUE(j["thread"].is_number());
  EXPECT_NE(f.clone(), nullptr);
}

TEST(ConfigureLoggingTest, RejectsUnknownFormatsAndLevels) {
  EXPECT_FALSE(ConfigureLogging("xml", "").ok());
  EXPECT_FALSE(ConfigureLogging("text", "loud").ok());
  EXPECT_TRUE(ConfigureLogging("json", "warn").ok());
  EXPECT_TRUE(ConfigureLogging("text", "info").ok());
}

}  // namespace
}  // namespace tokenmill
