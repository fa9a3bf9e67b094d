#include "api/proto_convert.h"

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

TEST(ClientRequestFromProtoTest, DefaultsAndFields) {
  v1::GenerateRequest r;
  r.set_text("hello");
  auto c = ClientRequestFromProto(r);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c->input.prompt, "hello");
  EXPECT_EQ(c->input.n, 1);
  EXPECT_FALSE(c->max_tokens.has_value());
  EXPECT_TRUE(c->input.skip_special_tokens);
  EXPECT_FLOAT_EQ(c->input.sampling.temperature, 1.0f);
  EXPECT_FALSE(c->input.sampling.seed.has_value());
  EXPECT_EQ(c->protocol, "grpc");

  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_top_k(5);
  r.set_max_tokens(7);
  r.set_n(2);
  r.set_seed(0);  // 0 is a seed, not "unset"
  r.add_stop("\n");
  r.add_stop_token_ids(9);
  r.set_priority(3);
  r.set_logprobs(4);
  r.set_skip_special_tokens(false);
  r.set_request_id("abc");
  c = ClientRequestFromProto(r);
  ASSERT_TRUE(c.ok());
  EXPECT_FLOAT_EQ(c->input.sampling.temperature, 0.0f);
  EXPECT_EQ(c->input.sampling.top_k, 5);
  EXPECT_EQ(*c->max_tokens, 7);
  EXPECT_EQ(c->input.n, 2);
  EXPECT_EQ(*c->input.sampling.seed, 0u);
  EXPECT_EQ(c->input.stop, std::vector<std::string>({"\n"}));
  EXPECT_EQ(c->input.sampling.stop_token_ids, std::vector<int32_t>({9}));
  EXPECT_EQ(c->input.priority, 3);
  EXPECT_EQ(c->input.sampling.logprobs, 4);
  EXPECT_FALSE(c->input.skip_special_tokens);
  EXPECT_EQ(c->input.request_id, "abc");
}

TEST(ClientRequestFromProtoTest, ChatMessages) {
  v1::GenerateRequest r;
  v1::ChatMessage* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  auto c = ClientRequestFromProto(r);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c->input.messages)[0]["content"], "hi");
  EXPECT_FALSE((*c->input.messages)[0].contains("name"));
  EXPECT_TRUE(c->input.add_generation_prompt);
  r.mutable_chat()->set_add_generation_prompt(false);
  EXPECT_FALSE(ClientRequestFromProto(r)->input.add_generation_prompt);
}

TEST(ClientRequestFromProtoTest, ErrorsNameTheField) {
  v1::GenerateRequest r;
  EXPECT_EQ(ClientRequestFromProto(r).status().message(),
            "input: set one of text, token_ids or chat");
  r.set_text("bad \xFF");
  EXPECT_EQ(ClientRequestFromProto(r).status().message(), "text: is not valid UTF-8");
  r.set_text("ok");
  r.add_stop_token_ids(-1);
  EXPECT_EQ(ClientRequestFromProto(r).status().message(), "stop_token_ids[0]: must be >= 0");
  r.clear_stop_token_ids();
  r.mutable_token_ids()->add_ids(3);
  r.mutable_token_ids()->add_ids(-4);
  EXPECT_EQ(ClientRequestFromProto(r).status().message(), "token_ids.ids[1]: must be >= 0");
  r.mutable_chat()->add_messages()->set_content("\xC3");
  EXPECT_EQ(ClientRequestFromProto(r).status().message(),
            "chat.messages[0].content: is not valid UTF-8");
}

// Regression (issue #10, soak test): protobuf refuses a request whose string field holds
// invalid UTF-8, and gRPC's generated handler then answered a bare UNIMPLEMENTED. The service
// parses the bytes itself and names the field.
TEST(GenerateRequestFromWireTest, InvalidUtf8IsInvalidArgumentNamingTheField) {
  v1::GenerateRequest r;
  r.set_text("fine");
  r.set_max_tokens(3);
  auto parsed = RequestFromWire<v1::GenerateRequest>(r.SerializeAsString());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->text(), "fine");
  EXPECT_EQ(parsed->max_tokens(), 3);

  // (SerializeAsString writes the bad bytes, logging that it does.)
  r.set_text("bad \xFF\xFE");
  parsed = RequestFromWire<v1::GenerateRequest>(r.SerializeAsString());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parsed.status().message(), "text: is not valid UTF-8");

  r.set_text("ok");
  r.add_stop("a");
  r.add_stop("\xC3");
  EXPECT_EQ(RequestFromWire<v1::GenerateRequest>(r.SerializeAsString()).status().message(),
            "stop[1]: is not valid UTF-8");

  r.clear_stop();
  r.mutable_chat()->add_messages()->set_content("hi");
  r.mutable_chat()->add_messages()->set_role("us\xE2\x82");
  EXPECT_EQ(RequestFromWire<v1::GenerateRequest>(r.SerializeAsString()).status().message(),
            "chat.messages[1].role: is not valid UTF-8");

  parsed = RequestFromWire<v1::GenerateRequest>("\xFF\xFF\xFF not a message");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parsed.status().message(),
            "request: is not a valid tokenmill.v1.GenerateRequest message");
}

// The same parse serves every method's request (issue #10 follow-up): each names its own
// fields and its own message type.
TEST(RequestFromWireTest, EveryRequestTypeNamesItsFieldOrItself) {
  v1::TokenizeRequest t;
  t.mutable_chat()->add_messages()->set_content("ok");
  t.mutable_chat()->add_messages()->set_name("\xF0\x9F\x98");  // a cut 4-byte sequence
  EXPECT_EQ(RequestFromWire<v1::TokenizeRequest>(t.SerializeAsString()).status().message(),
            "chat.messages[1].name: is not valid UTF-8");
  v1::DetokenizeRequest d;
  d.set_model("\xED\xA0\x80");  // a surrogate
  d.add_token_ids(7);
  EXPECT_EQ(RequestFromWire<v1::DetokenizeRequest>(d.SerializeAsString()).status().message(),
            "model: is not valid UTF-8");
  d.set_model("demo");
  auto parsed = RequestFromWire<v1::DetokenizeRequest>(d.SerializeAsString());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->model(), "demo");
  EXPECT_EQ(parsed->token_ids(0), 7);

  const std::string truncated = d.SerializeAsString().substr(0, 3);
  auto bad = RequestFromWire<v1::DetokenizeRequest>(truncated);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "request: is not a valid tokenmill.v1.DetokenizeRequest message");
  EXPECT_EQ(RequestFromWire<v1::GetStatsRequest>("\xFF\xFF").status().message(),
            "request: is not a valid tokenmill.v1.GetStatsRequest message");

  // No bytes are an empty message; an unknown field (from a newer client) is kept, even one
  // whose bytes are not UTF-8: only the fields this server knows are checked.
  EXPECT_TRUE(RequestFromWire<v1::ListModelsRequest>("").ok());
  auto newer = RequestFromWire<v1::ListModelsRequest>(std::string("\x4A\x02\xFF\xFE", 4));
  ASSERT_TRUE(newer.ok()) << newer.status();
  EXPECT_EQ(newer->GetReflection()->GetUnknownFields(*newer).field_count(), 1);
}

TEST(ProtoConvertTest, DeltasMergeAndFinalInfoCarriesTheRecord) {
  CompletionDelta d;
  d.index = 1;
  d.text = "ab";
  d.ids = {'a', 'b'};
  v1::GenerateResponse m = DeltaToProto("r1", d, nullptr, 0);
  CompletionDelta e;
  e.index = 1;
  e.text = "c";
  e.ids = {'c'};
  e.finish_reason = FinishReason::kContextLength;
  MergeDelta(m, DeltaToProto("r1", e, nullptr, 0));
  EXPECT_EQ(m.text(), "abc");
  EXPECT_EQ(m.token_ids_size(), 3);
  EXPECT_EQ(m.finish_reason(), v1::FINISH_REASON_CONTEXT_LENGTH);

  CompletionResult r;
  r.choices.resize(2);
  r.choices[0].finish_reason = FinishReason::kStop;
  r.choices[1].finish_reason = FinishReason::kLength;
  r.prompt_ids = {1, 2};
  r.usage.prompt_tokens = 2;
  r.usage.generated_tokens = 5;
  r.usage.record.ttft_s = 0.5;
  r.usage.record.e2e_s = 1.5;
  r.usage.record.cost = 0.25;
  r.usage.record.currency = "EUR";
  v1::FinalInfo f;
  FillFinalInfo(r, &f);
  EXPECT_EQ(f.finish_reasons(0), v1::FINISH_REASON_STOP);
  EXPECT_EQ(f.finish_reasons(1), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(f.usage().total_tokens(), 7);
  EXPECT_FALSE(f.timings().has_queue_s());  // unknown stays unset
  EXPECT_DOUBLE_EQ(f.timings().ttft_s(), 0.5);
  EXPECT_FALSE(f.energy().has_joules());
  EXPECT_EQ(f.energy().energy_source(), "none");
  EXPECT_DOUBLE_EQ(f.cost().cost(), 0.25);
  EXPECT_EQ(f.cost().currency(), "EUR");
  r.usage.record.joules = 2.0;
  r.usage.record.tokens_per_joule = 3.5;
  r.usage.record.energy_source = metrics::EnergySource::kNvml;
  v1::FinalInfo g;
  FillFinalInfo(r, &g);
  EXPECT_DOUBLE_EQ(g.energy().joules(), 2.0);
  EXPECT_DOUBLE_EQ(g.energy().tokens_per_joule(), 3.5);
  EXPECT_EQ(g.energy().energy_source(), "nvml");
}

}  // namespace
}  // namespace tokenmill
