// End to end over HTTP: the OpenAI-compatible API, SSE, metrics and health of the real
// `tokenmill serve` binary (demo model, with a chat template given by --chat-template).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_split.h"
#include "e2e/e2e_util.h"
#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"
#include "nlohmann/json.hpp"

namespace tokenmill::e2e {
namespace {

using Json = nlohmann::json;

constexpr char kChatTemplate[] =
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

class HttpE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string tmpl = dir_->WriteFile("chat.jinja", kChatTemplate);
    // A static power model: every energy figure exists and is labelled "estimated".
    server_ = ServerProcess::Start({"--model", "demo", "--chat-template", tmpl, "--energy-meter",
                                    "static", "--static-watts", "100"})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    http_ = MakeHttpClient(*server_);
  }

  httplib::Result Post(const std::string& path, const Json& body) {
    return http_->Post(path.c_str(), body.dump(), "application/json");
  }
  Json Stats() {
    auto r = http_->Get("/v1/stats");
    EXPECT_TRUE(r && r->status == 200);
    return r ? Json::parse(r->body) : Json();
  }
  void ExpectIdle() {
    EXPECT_TRUE(PollUntil(
        [&] {
          const Json s = Stats();
          return s["num_pending_requests"] == 0 && s["kv_cache"]["num_used_blocks"] == 0;
        },
        5))
        << Stats().dump();
  }
  // The JSON payloads of an SSE body, without the final [DONE] (checked here).
  static std::vector<Json> SseEvents(const std::string& body) {
    std::vector<Json> events;
    std::vector<std::string> parts = absl::StrSplit(body, "\n\n", absl::SkipEmpty());
    EXPECT_FALSE(parts.empty());
    EXPECT_EQ(parts.back(), "data: [DONE]");
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      EXPECT_EQ(parts[i].rfind("data: ", 0), 0u) << parts[i];
      events.push_back(Json::parse(parts[i].substr(6)));
    }
    return events;
  }
  static void ExpectError(const httplib::Result& r, int status, const std::string& param,
                          const std::string& code = "") {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const Json j = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.contains("error")) << r->body;
    const Json& e = j["error"];
    EXPECT_TRUE(e["message"].is_string());
    EXPECT_TRUE(e["type"].is_string());
    if (param.empty()) {
      EXPECT_TRUE(e["param"].is_null()) << r->body;
    } else {
      EXPECT_EQ(e["param"], param) << r->body;
    }
    if (!code.empty()) {
      EXPECT_EQ(e["code"], code) << r->body;
    }
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  std::unique_ptr<httplib::Client> http_;
};
TempDir* HttpE2eTest::dir_ = nullptr;
ServerProcess* HttpE2eTest::server_ = nullptr;

const Json kGreedy = {{"model", "demo"}, {"temperature", 0}, {"ignore_eos", true}};

Json With(Json base, const Json& more) {
  base.update(more);
  return base;
}

TEST_F(HttpE2eTest, CompletionWithOpenAiFieldsAndTokenmillUsage) {
  auto r = Post("/v1/completions", With(kGreedy, {{"prompt", "Hello"}, {"max_tokens", 7}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "demo");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_GT(j["created"].get<int64_t>(), 1600000000);
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_TRUE(j["choices"][0]["text"].is_string());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  const Json& u = j["usage"];
  EXPECT_EQ(u["prompt_tokens"], 6);
  EXPECT_EQ(u["completion_tokens"], 7);
  EXPECT_EQ(u["total_tokens"], 13);
  EXPECT_EQ(u["prompt_tokens_details"]["cached_tokens"], 0);
  const Json& t = u["tokenmill"];
  for (const char* k : {"queue_s", "ttft_s", "tpot_s", "e2e_s", "joules", "tokens_per_joule",
                        "cost", "currency", "energy_source"}) {
    EXPECT_TRUE(t.contains(k)) << k;
  }
  EXPECT_GT(t["e2e_s"].get<double>(), 0);
  EXPECT_EQ(t["currency"], "USD");
  EXPECT_EQ(t["energy_source"], "estimated");
  EXPECT_GT(t["joules"].get<double>(), 0);
  EXPECT_NEAR(t["tokens_per_joule"].get<double>(), 13 / t["joules"].get<double>(), 1e-6);
}

TEST_F(HttpE2eTest, StreamedCompletionMatchesTheUnaryOneAndEndsWithUsageAndDone) {
  const Json req = With(kGreedy, {{"prompt", "Stream me"}, {"max_tokens", 9}});
  auto unary = Post("/v1/completions", req);
  ASSERT_TRUE(unary && unary->status == 200);
  const std::string expected = Json::parse(unary->body)["choices"][0]["text"];
  auto r = Post("/v1/completions",
                With(req, {{"stream", true}, {"stream_options", {{"include_usage", true}}}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<Json> events = SseEvents(r->body);
  ASSERT_GE(events.size(), 2u);
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "text_completion");
    EXPECT_TRUE(events[i]["usage"].is_null());
    text += events[i]["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text, expected);
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");
  const Json& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["completion_tokens"], 9);
  EXPECT_TRUE(last["usage"]["tokenmill"].contains("ttft_s"));
}

TEST_F(HttpE2eTest, ChatCompletionsUnaryAndStreamed) {
  const Json req =
      With(kGreedy, {{"messages",
                      {{{"role", "system"}, {"content", "Be brief."}},
                       {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi"}}}}}}},
                     {"max_tokens", 5}});
  auto r = Post("/v1/chat/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string content = j["choices"][0]["message"]["content"];
  // The template renders this; the byte tokenizer makes one token per byte, and no BOS is
  // added to a rendered chat (the template writes it when the model wants one).
  const int rendered = std::string("<|system|>Be brief.\n<|user|>Hi\n<|assistant|>").size();
  EXPECT_EQ(j["usage"]["prompt_tokens"], rendered);

  auto s = Post("/v1/chat/completions",
                With(req, {{"stream", true}, {"stream_options", {{"include_usage", true}}}}));
  ASSERT_TRUE(s && s->status == 200) << (s ? s->body : "");
  const std::vector<Json> events = SseEvents(s->body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string streamed;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    streamed += events[i]["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(streamed, content);
  EXPECT_EQ(events.back()["usage"]["prompt_tokens"], rendered);
}

TEST_F(HttpE2eTest, LogprobsInBothFormats) {
  auto r =
      Post("/v1/completions", With(kGreedy, {{"prompt", "x"}, {"max_tokens", 3}, {"logprobs", 2}}));
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "");
  const Json lp = Json::parse(r->body)["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 3u);
  EXPECT_EQ(lp["token_logprobs"].size(), 3u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  auto c = Post("/v1/chat/completions",
                With(kGreedy, {{"messages", {{{"role", "user"}, {"content", "x"}}}},
                               {"max_tokens", 3},
                               {"logprobs", true},
                               {"top_logprobs", 4}}));
  ASSERT_TRUE(c && c->status == 200) << (c ? c->body : "");
  const Json content = Json::parse(c->body)["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 4u);
  EXPECT_TRUE(content[0]["bytes"].is_array());
}

TEST_F(HttpE2eTest, ModelsHealthReadyMetrics) {
  auto models = http_->Get("/v1/models");
  ASSERT_TRUE(models && models->status == 200);
  const Json m = Json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"][0]["id"], "demo");
  EXPECT_EQ(m["data"][0]["object"], "model");
  auto one = http_->Get("/v1/models/demo");
  ASSERT_TRUE(one && one->status == 200);
  ExpectError(http_->Get("/v1/models/gpt-4"), 404, "model", "model_not_found");
  auto health = http_->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = http_->Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  ASSERT_TRUE(Post("/v1/completions", With(kGreedy, {{"prompt", "m"}, {"max_tokens", 2}})));
  auto metrics = http_->Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  auto families = metrics::testing::ParseExposition(metrics->body);
  ASSERT_TRUE(families.ok()) << families.status();
  EXPECT_GE(metrics::testing::SampleValue(*families, "tokenmill:request_success_total",
                                          "tokenmill:request_success_total",
                                          {{"finished_reason", "length"}, {"tenant", "default"}}),
            1);
  EXPECT_TRUE(families->contains("tokenmill:kv_cache_usage_perc"));
  EXPECT_GT(metrics::testing::SampleValue(*families, "tokenmill:energy_joules_total",
                                          "tokenmill:energy_joules_total",
                                          {{"energy_source", "estimated"}}),
            0);
  EXPECT_TRUE(families->contains("tokenmill:time_to_first_token_seconds"));
}

TEST_F(HttpE2eTest, ErrorsAreOpenAiBodiesWithTheRightStatus) {
  ExpectError(http_->Post("/v1/completions", "{not json", "application/json"), 400, "body");
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", "x"}, {"frobnicate", 1}})), 400,
              "frobnicate");
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", "x"}, {"max_tokens", 0}})), 400,
              "max_tokens");
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", "x"}, {"temperature", "hot"}})),
              400, "temperature");
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", "x"}, {"top_p", 7}})), 400,
              "top_p");
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", ""}})), 400, "prompt");
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", {"a", "b"}}})), 400, "prompt");
  ExpectError(Post("/v1/completions", {{"model", "gpt-4"}, {"prompt", "x"}}), 404, "model",
              "model_not_found");
  ExpectError(Post("/v1/chat/completions", With(kGreedy, {{"messages", Json::array()}})), 400,
              "messages");
  ExpectError(Post("/v1/chat/completions",
                   With(kGreedy, {{"messages", {{{"role", "user"}, {"content", "x"}}}},
                                  {"tools", {{{"type", "function"}}}}})),
              400, "tools");
  // A prompt longer than the context: 400 context_length_exceeded (not a retryable 429).
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", std::string(3000, 'a')}})), 400,
              "prompt", "context_length_exceeded");
  // Larger than limits.max_request_bytes (1 MiB by default): 413.
  ExpectError(Post("/v1/completions", With(kGreedy, {{"prompt", std::string(2 << 20, 'a')}})), 413,
              "body");
  ExpectError(http_->Get("/v1/nothing-here"), 404, "");
  ExpectIdle();
  // Every refusal is counted, by code and reason (the 413 and 404 never reach the front end).
  auto metrics = http_->Get("/metrics");
  ASSERT_TRUE(metrics);
  auto families = metrics::testing::ParseExposition(metrics->body);
  ASSERT_TRUE(families.ok()) << families.status();
  const char* kName = "tokenmill:request_rejections_total";
  EXPECT_GE(metrics::testing::SampleValue(*families, kName, kName,
                                          {{"error_code", "invalid_argument"}, {"reason", ""}}),
            9);
  EXPECT_EQ(
      metrics::testing::SampleValue(*families, kName, kName,
                                    {{"error_code", "not_found"}, {"reason", "model_not_found"}}),
      1);
  EXPECT_EQ(metrics::testing::SampleValue(*families, kName, kName,
                                          {{"reason", "context_length_exceeded"}}),
            1);
  EXPECT_EQ(metrics::testing::SampleValue(*families, "tokenmill:frontend_active_requests",
                                          "tokenmill:frontend_active_requests", {}),
            0);
}

TEST_F(HttpE2eTest, StreamingClientThatHangsUpIsCancelledAndItsBlocksFreed) {
  const int64_t before = Stats()["scheduler"]["num_generated_tokens"];
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = With(kGreedy, {{"prompt", "long"}, {"max_tokens", 1500}, {"stream", true}}).dump();
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  httplib::Response res;
  httplib::Error err;
  auto client = MakeHttpClient(*server_);
  client->send(req, res, err);
  EXPECT_EQ(chunks, 3);
  client.reset();  // closes the connection
  ExpectIdle();
  EXPECT_LT(Stats()["scheduler"]["num_generated_tokens"].get<int64_t>() - before, 1000);
}

TEST_F(HttpE2eTest, UnaryClientThatHangsUpIsCancelledToo) {
  const int64_t before = Stats()["scheduler"]["num_generated_tokens"];
  const std::string body = With(kGreedy, {{"prompt", "long"}, {"max_tokens", 1500}}).dump();
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->http_port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  EXPECT_TRUE(PollUntil([&] { return Stats()["num_pending_requests"] == 1; }, 5));
  close(fd);
  ExpectIdle();
  EXPECT_LT(Stats()["scheduler"]["num_generated_tokens"].get<int64_t>() - before, 1000);
}

}  // namespace
}  // namespace tokenmill::e2e
