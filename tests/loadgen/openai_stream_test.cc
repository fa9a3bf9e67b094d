// SSE framing and the OpenAI completion stream as the HTTP target reads them.
#include "loadgen/openai_stream.h"

#include "gtest/gtest.h"
#include "loadgen/sse.h"

namespace tokenmill::loadgen {
namespace {

std::vector<std::string> ParseInPieces(const std::string& bytes, size_t piece) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) {
    events.push_back(d);
    return true;
  });
  for (size_t i = 0; i < bytes.size(); i += piece) p.Feed(std::string_view(bytes).substr(i, piece));
  p.Finish();
  return events;
}

TEST(SseParserTest, EventsAreTheSameWhateverThePieceSize) {
  const std::string stream =
      ": keep-alive comment\n\n"
      "data: {\"a\":1}\n\n"
      "event: message\r\ndata: two\r\ndata: lines\r\n\r\n"
      "id: 7\ndata:no-space\n\n"
      "retry: 100\n\n"  // no data: no event
      "data: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "two\nlines", "no-space", "[DONE]"};
  for (size_t piece : {1, 2, 3, 7, 64, 1000}) {
    EXPECT_EQ(ParseInPieces(stream, piece), want) << "piece " << piece;
  }
}

TEST(SseParserTest, CarriageReturnLineEndsAndAFinalEventWithoutBlankLine) {
  EXPECT_EQ(ParseInPieces("data: a\r\rdata: b\r", 1), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ParseInPieces("data: tail", 3), (std::vector<std::string>{"tail"}));
}

TEST(SseParserTest, StopsWhenTheCallbackSaysSo) {
  int n = 0;
  SseParser p([&](const std::string&) { return ++n < 2; });
  EXPECT_TRUE(p.Feed("data: 1\n\n"));
  EXPECT_FALSE(p.Feed("data: 2\n\ndata: 3\n\n"));
  EXPECT_FALSE(p.Feed("data: 4\n\n"));
  EXPECT_EQ(n, 2);
}

TEST(CompletionRequestBodyTest, TokenIdsOrTextWithExactLengthExtensions) {
  TargetRequest r;
  r.prompt_ids = {1, 5, 9};
  r.prompt_text = "hello";
  r.max_tokens = 7;
  r.seed = 3;
  const nlohmann::json ids = CompletionRequestBody(r, "m", /*send_token_ids=*/true);
  EXPECT_EQ(ids["model"], "m");
  EXPECT_EQ(ids["prompt"], nlohmann::json::array({1, 5, 9}));
  EXPECT_EQ(ids["max_tokens"], 7);
  EXPECT_EQ(ids["stream"], true);
  EXPECT_EQ(ids["stream_options"]["include_usage"], true);
  EXPECT_EQ(ids["ignore_eos"], true);
  EXPECT_FALSE(ids.contains("min_tokens"));  // strict servers (tokenmill) reject unknown fields
  EXPECT_EQ(ids["seed"], 3);
  const nlohmann::json text = CompletionRequestBody(r, "", false);
  EXPECT_EQ(text["prompt"], "hello");
  EXPECT_FALSE(text.contains("model"));
  const nlohmann::json extra =
      CompletionRequestBody(r, "m", true, {{"min_tokens", 7}, {"temperature", 0.5}});
  EXPECT_EQ(extra["min_tokens"], 7);
  EXPECT_EQ(extra["temperature"], 0.5);  // extra fields override
  r.ignore_eos = false;
  const nlohmann::json free = CompletionRequestBody(r, "m", true);
  EXPECT_FALSE(free.contains("ignore_eos"));
}

TEST(OpenAiStreamReaderTest, ChunksUsageAndTheTokenmillBlock) {
  FakeClock clock(100.0);
  RequestResult r;
  r.send_s = 100.0;
  OpenAiStreamReader reader(&r, &clock);
  clock.Advance(0.25);
  EXPECT_TRUE(reader.OnData(R"({"choices":[{"index":0,"text":"Once","finish_reason":null}]})"));
  clock.Advance(0.05);
  // A token whose text is held back (half a UTF-8 character) still arrives as a chunk.
  EXPECT_TRUE(reader.OnData(R"({"choices":[{"index":0,"text":"","finish_reason":null}]})"));
  clock.Advance(0.05);
  EXPECT_TRUE(reader.OnData(R"({"choices":[{"index":0,"text":" upon","finish_reason":null}]})"));
  // A chunk that only finishes carries no token.
  EXPECT_TRUE(reader.OnData(R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})"));
  clock.Advance(0.01);
  EXPECT_TRUE(reader.OnData(
      R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,)"
      R"("prompt_tokens_details":{"cached_tokens":8},"tokenmill":{"queue_s":0.01,)"
      R"("joules":1.5,"tokens_per_joule":10,"cost":0.0001,"currency":"EUR",)"
      R"("energy_source":"rapl"}}})"));
  EXPECT_FALSE(reader.OnData("[DONE]"));
  reader.Finish();
  EXPECT_TRUE(r.ok()) << r.error_code << ": " << r.error_message;
  EXPECT_DOUBLE_EQ(*r.first_token_s, 100.25);
  ASSERT_EQ(r.chunk_times_s.size(), 3u);
  EXPECT_NEAR(r.chunk_times_s[1] - r.chunk_times_s[0], 0.05, 1e-9);
  EXPECT_NEAR(r.chunk_times_s[2] - r.chunk_times_s[1], 0.05, 1e-9);
  EXPECT_EQ(r.output_tokens, 3);
  EXPECT_TRUE(r.output_tokens_from_usage);
  EXPECT_EQ(*r.prompt_tokens, 12);
  EXPECT_EQ(*r.cached_tokens, 8);
  EXPECT_DOUBLE_EQ(*r.joules, 1.5);
  EXPECT_DOUBLE_EQ(*r.cost, 0.0001);
  EXPECT_EQ(r.currency, "EUR");
  EXPECT_EQ(r.energy_source, "rapl");
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_NEAR(r.end_s, 100.36, 1e-9);
}

TEST(OpenAiStreamReaderTest, WithoutUsageChunksAreCountedAndUnknownEnergyStaysNull) {
  FakeClock clock;
  RequestResult r;
  OpenAiStreamReader reader(&r, &clock);
  for (int i = 0; i < 4; ++i) {
    reader.OnData(R"({"choices":[{"text":"x","finish_reason":null}]})");
  }
  reader.OnData(R"({"choices":[{"text":"","finish_reason":"stop"}],"usage":{"prompt_tokens":3,)"
                R"("completion_tokens":null,"tokenmill":{"joules":null,"cost":null}}})");
  reader.Finish();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.output_tokens, 4);
  EXPECT_FALSE(r.output_tokens_from_usage);
  EXPECT_FALSE(r.joules.has_value());
  EXPECT_FALSE(r.cost.has_value());
  EXPECT_FALSE(r.cached_tokens.has_value());
}

TEST(OpenAiStreamReaderTest, ErrorsEventsAndStreamsCutShort) {
  FakeClock clock;
  {
    RequestResult r;
    OpenAiStreamReader reader(&r, &clock);
    reader.OnData(R"({"choices":[{"text":"a"}]})");
    EXPECT_FALSE(reader.OnData(
        R"({"error":{"message":"engine unavailable","type":"server_error","code":"unavailable"}})"));
    reader.Finish();
    EXPECT_EQ(r.error_code, "unavailable");
    EXPECT_EQ(r.error_message, "engine unavailable");
  }
  {
    RequestResult r;
    OpenAiStreamReader reader(&r, &clock);
    reader.OnData(R"({"error":{"message":"m","code":503}})");
    EXPECT_EQ(r.error_code, "http_503");
  }
  {
    RequestResult r;
    OpenAiStreamReader reader(&r, &clock);
    reader.OnData(R"({"choices":[{"text":"a"}]})");
    reader.Finish();  // neither a finish_reason nor [DONE]
    EXPECT_EQ(r.error_code, "protocol");
  }
  {
    RequestResult r;
    OpenAiStreamReader reader(&r, &clock);
    EXPECT_FALSE(reader.OnData("not json"));
    EXPECT_EQ(r.error_code, "protocol");
  }
}

}  // namespace
}  // namespace tokenmill::loadgen
