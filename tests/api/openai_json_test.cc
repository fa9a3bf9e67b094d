#include "api/openai_json.h"

#include "gtest/gtest.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {
namespace {

using Json = nlohmann::ordered_json;

absl::Status ErrorOf(const Json& body, bool chat = false) {
  auto r = chat ? ParseChatRequest(body) : ParseCompletionRequest(body);
  return r.ok() ? absl::OkStatus() : r.status();
}

TEST(ParseCompletionRequestTest, ReadsOpenAiAndVllmFields) {
  auto r = ParseCompletionRequest(Json::parse(R"({
    "model": "demo", "prompt": "Hello", "max_tokens": 12, "temperature": 0.5, "top_p": 0.9,
    "n": 2, "stream": true, "stream_options": {"include_usage": true}, "stop": ["\n", "END"],
    "seed": 7, "presence_penalty": 0.1, "frequency_penalty": -0.2, "logprobs": 3,
    "user": "u1", "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": true,
    "stop_token_ids": [2, 3], "skip_special_tokens": false, "priority": -1, "best_of": 2})"));
  ASSERT_TRUE(r.ok()) << r.status();
  const CompletionInput& in = r->client.input;
  EXPECT_EQ(r->client.model, "demo");
  EXPECT_EQ(*in.prompt, "Hello");
  EXPECT_EQ(*r->client.max_tokens, 12);
  EXPECT_FLOAT_EQ(in.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(in.sampling.top_p, 0.9f);
  EXPECT_EQ(in.n, 2);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(in.stop, std::vector<std::string>({"\n", "END"}));
  EXPECT_EQ(*in.sampling.seed, 7u);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->top_logprobs, 3);
  EXPECT_EQ(in.sampling.logprobs, 3);
  EXPECT_EQ(in.sampling.top_k, 40);
  EXPECT_TRUE(in.sampling.ignore_eos);
  EXPECT_EQ(in.sampling.stop_token_ids, std::vector<int32_t>({2, 3}));
  EXPECT_FALSE(in.skip_special_tokens);
  EXPECT_EQ(in.priority, -1);
}

TEST(ParseCompletionRequestTest, PromptForms) {
  auto ids = ParseCompletionRequest(Json::parse(R"({"prompt": [1, 2, 3]})"));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids->client.input.prompt_ids, std::vector<int32_t>({1, 2, 3}));
  auto one = ParseCompletionRequest(Json::parse(R"({"prompt": ["only"]})"));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one->client.input.prompt, "only");
  auto nested = ParseCompletionRequest(Json::parse(R"({"prompt": [[5, 6]]})"));
  ASSERT_TRUE(nested.ok());
  EXPECT_EQ(*nested->client.input.prompt_ids, std::vector<int32_t>({5, 6}));
  // Absent fields keep their defaults; null reads as absent.
  auto defaults = ParseCompletionRequest(Json::parse(R"({"prompt": "x", "max_tokens": null})"));
  ASSERT_TRUE(defaults.ok());
  EXPECT_FALSE(defaults->client.max_tokens.has_value());
  EXPECT_EQ(defaults->client.input.n, 1);
  EXPECT_FALSE(defaults->stream);
  EXPECT_FALSE(defaults->logprobs);
}

TEST(ParseCompletionRequestTest, ErrorsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"([1])", "body: must be a JSON object"},
      {R"({})", "prompt: is required"},
      {R"({"prompt": 5})", "prompt: must be a string"},
      {R"({"prompt": []})", "prompt: must not be empty"},
      {R"({"prompt": ["a", "b"]})", "prompt: a batch of 2 prompts is not supported"},
      {R"({"prompt": [1, -2]})", "prompt[1]: must be a token id"},
      {R"({"prompt": "x", "max_tokens": "ten"})", "max_tokens: must be an integer"},
      {R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens: must be an integer"},
      {R"({"prompt": "x", "max_tokens": 99999999999})", "max_tokens: 99999999999 is out of range"},
      {R"({"prompt": "x", "temperature": "hot"})", "temperature: must be a number"},
      {R"({"prompt": "x", "stream": 1})", "stream: must be true or false"},
      {R"({"prompt": "x", "stop": 3})", "stop: must be a string or an array of strings"},
      {R"({"prompt": "x", "stop": ["a", 1]})", "stop[1]: must be a string"},
      {R"({"prompt": "x", "stream_options": {"include_usage": 1}})",
       "stream_options.include_usage: must be true or false"},
      {R"({"prompt": "x", "stream_options": {"foo": true}})", "stream_options.foo: unknown field"},
      {R"({"prompt": "x", "logit_bias": {"1": 2}})", "logit_bias: not supported"},
      {R"({"prompt": "x", "echo": true})", "echo: not supported"},
      {R"({"prompt": "x", "best_of": 3})", "best_of: only best_of == n is supported"},
      {R"({"prompt": "x", "suffix": "y"})", "suffix: not supported"},
      {R"({"prompt": "x", "logprobs": -1})", "logprobs: must be >= 0, got -1"},
      {R"({"prompt": "x", "frobnicate": true})", "frobnicate: unknown field"},
  };
  for (const auto& [body, prefix] : cases) {
    const absl::Status s = ErrorOf(Json::parse(body));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(std::string(s.message()).rfind(prefix, 0), 0u) << body << " -> " << s;
  }
}

TEST(ParseChatRequestTest, MessagesAndChatFields) {
  auto r = ParseChatRequest(Json::parse(R"({
    "model": "m", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
       "name": "bob"},
      {"role": "assistant", "content": null}],
    "max_tokens": 5, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 2,
    "store": false, "metadata": {"k": "v"}, "tool_choice": "none",
    "response_format": {"type": "text"}, "add_generation_prompt": false})"));
  ASSERT_TRUE(r.ok()) << r.status();
  const Json& m = *r->client.input.messages;
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[1]["content"], "a\nb");
  EXPECT_EQ(m[1]["name"], "bob");
  EXPECT_EQ(m[2]["content"], "");
  EXPECT_EQ(*r->client.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->top_logprobs, 2);
  EXPECT_FALSE(r->client.input.add_generation_prompt);
  EXPECT_TRUE(r->chat);
}

TEST(ParseChatRequestTest, ErrorsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({})", "messages: is required"},
      {R"({"messages": {}})", "messages: must be an array"},
      {R"({"messages": [3]})", "messages[0]: must be an object"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role: must be a string"},
      {R"({"messages": [{"role": "user", "content": 3}]})", "messages[0].content: must be"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type: only text parts are supported"},
      {R"({"messages": [{"role": "user", "content": "x", "tool_calls": []}]})",
       "messages[0].tool_calls: not supported"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       "top_logprobs: needs logprobs: true"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})",
       "tools: not supported"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})",
       "response_format: only"},
      {R"({"messages": [{"role": "user", "content": "x"}], "prompt": "y"})",
       "prompt: unknown field"},
  };
  for (const auto& [body, prefix] : cases) {
    const absl::Status s = ErrorOf(Json::parse(body), /*chat=*/true);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(std::string(s.message()).rfind(prefix, 0), 0u) << body << " -> " << s;
  }
}

CompletionResult SampleResult() {
  CompletionResult r;
  r.request_id = "req-9";
  r.choices.resize(1);
  r.choices[0].text = "hi there";
  r.choices[0].finish_reason = FinishReason::kStop;
  SampledToken t;
  t.token_id = 'h';
  t.logprob = -0.5f;
  t.top_logprobs = {{'h', -0.5f}, {'x', -1.5f}};
  r.choices[0].logprobs = {t};
  r.usage.prompt_tokens = 4;
  r.usage.cached_tokens = 2;
  r.usage.generated_tokens = 3;
  r.usage.record.e2e_s = 0.25;
  r.usage.record.currency = "EUR";
  return r;
}

TEST(ResponseJsonTest, CompletionAndChatObjects) {
  const std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  const ResponseContext ctx{"cmpl-req-9", 1700000000, "demo", tok.get()};
  OpenAiRequest req;
  req.logprobs = true;
  req.top_logprobs = 1;
  Json j = CompletionResponseJson(ctx, req, SampleResult());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "hi there");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"][0], "h");
  EXPECT_EQ(j["choices"][0]["logprobs"]["top_logprobs"][0].size(), 1u);
  EXPECT_EQ(j["usage"]["total_tokens"], 7);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  EXPECT_EQ(j["usage"]["tokenmill"]["currency"], "EUR");
  EXPECT_TRUE(j["usage"]["tokenmill"]["joules"].is_null());
  req.chat = true;
  j = CompletionResponseJson(ctx, req, SampleResult());
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["bytes"], Json::array({'h'}));
}

TEST(ResponseJsonTest, StreamChunks) {
  const ResponseContext ctx{"chatcmpl-1", 1, "demo", nullptr};
  OpenAiRequest req;
  req.chat = true;
  req.include_usage = true;
  CompletionDelta d;
  d.text = "a";
  Json first = StreamChunkJson(ctx, req, d, /*first_of_choice=*/true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "a");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  d.text.clear();
  d.finish_reason = FinishReason::kContextLength;
  Json last = StreamChunkJson(ctx, req, d, false);
  EXPECT_FALSE(last["choices"][0]["delta"].contains("role"));
  EXPECT_FALSE(last["choices"][0]["delta"].contains("content"));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  Json usage = UsageChunkJson(ctx, req, SampleResult().usage);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 3);
  EXPECT_EQ(DumpJson(Json("\xFF")), "\"\xEF\xBF\xBD\"");  // never throws on bad UTF-8
}

}  // namespace
}  // namespace tokenmill
