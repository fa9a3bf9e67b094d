// End to end over gRPC: the real `tokenmill serve` binary on the demo model, driven by the C++
// client generated from proto/tokenmill/v1/service.proto.
#include <atomic>
#include <optional>
#include <sstream>
#include <thread>

#include "api/grpc_raw_call.h"
#include "e2e/e2e_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/testdata.h"

namespace tokenmill::e2e {
namespace {

class GrpcE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A node-hour price of 3600 makes a request's cost equal its device seconds.
    server_ = ServerProcess::Start({"--model", "demo", "--max-num-seqs", "64", "--price-gpu-hour",
                                    "3600", "--currency", "EUR", "--energy-meter", "none"})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_address());
  }
  // Every request of a test has ended and returned its KV blocks.
  void ExpectIdle() {
    EXPECT_TRUE(PollUntil(
        [&] {
          const v1::GetStatsResponse s = Stats(*stub_);
          return s.num_pending_requests() == 0 && s.kv_cache().num_used_blocks() == 0;
        },
        5))
        << Stats(*stub_).DebugString();
  }

  static v1::GenerateRequest TextRequest(const std::string& text, int max_tokens) {
    v1::GenerateRequest r;
    r.set_text(text);
    r.set_max_tokens(max_tokens);
    r.set_ignore_eos(true);
    r.mutable_sampling()->set_temperature(0);
    return r;
  }

  static ServerProcess* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
ServerProcess* GrpcE2eTest::server_ = nullptr;

TEST_F(GrpcE2eTest, StreamsTokensThenAFinalMessageWithUsageTimingsEnergyAndCost) {
  const GenerateOutcome out = RunGenerate(*stub_, TextRequest("Hello", 8));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.token_ids.size(), 8u);
  ASSERT_GE(out.messages.size(), 2u);
  EXPECT_TRUE(out.messages.back().has_final());
  for (size_t i = 0; i + 1 < out.messages.size(); ++i) EXPECT_FALSE(out.messages[i].has_final());
  EXPECT_EQ(out.messages[out.messages.size() - 2].finish_reason(), v1::FINISH_REASON_LENGTH);
  const v1::FinalInfo& f = out.final_info;
  ASSERT_EQ(f.finish_reasons_size(), 1);
  EXPECT_EQ(f.finish_reasons(0), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(f.usage().prompt_tokens(), 6);  // BOS + "Hello" in the byte tokenizer
  EXPECT_EQ(f.usage().generated_tokens(), 8);
  EXPECT_EQ(f.usage().total_tokens(), 14);
  EXPECT_EQ(f.prompt_token_ids_size(), 6);
  EXPECT_TRUE(f.timings().has_queue_s());
  EXPECT_TRUE(f.timings().has_ttft_s());
  EXPECT_TRUE(f.timings().has_tpot_s());
  EXPECT_GE(f.timings().e2e_s(), f.timings().ttft_s());
  EXPECT_GT(f.timings().device_s(), 0);
  // --energy-meter none: energy is absent, never 0, and costs nothing.
  EXPECT_EQ(f.energy().energy_source(), "none");
  EXPECT_FALSE(f.energy().has_joules());
  EXPECT_FALSE(f.energy().has_tokens_per_joule());
  EXPECT_EQ(f.cost().currency(), "EUR");
  EXPECT_NEAR(f.cost().cost(), f.timings().device_s(), 1e-9);

  // The streamed text is the detokenization of the streamed ids.
  grpc::ClientContext ctx;
  v1::DetokenizeRequest dreq;
  dreq.mutable_token_ids()->Add(out.token_ids.begin(), out.token_ids.end());
  v1::DetokenizeResponse dres;
  ASSERT_TRUE(stub_->Detokenize(&ctx, dreq, &dres).ok());
  EXPECT_EQ(dres.text(), out.text);
  ExpectIdle();
}

TEST_F(GrpcE2eTest, GreedyAndSeededRequestsAreReproducible) {
  const GenerateOutcome a = RunGenerate(*stub_, TextRequest("abc", 12));
  const GenerateOutcome b = RunGenerate(*stub_, TextRequest("abc", 12));
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.token_ids, b.token_ids);
  v1::GenerateRequest seeded = TextRequest("abc", 12);
  seeded.mutable_sampling()->set_temperature(1.0);
  seeded.set_seed(42);
  const GenerateOutcome c = RunGenerate(*stub_, seeded);
  const GenerateOutcome d = RunGenerate(*stub_, seeded);
  ASSERT_TRUE(c.status.ok() && d.status.ok());
  EXPECT_EQ(c.token_ids, d.token_ids);
}

TEST_F(GrpcE2eTest, TokenIdsInputWithTopLogprobs) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->add_ids(256);
  r.mutable_token_ids()->add_ids(72);
  r.set_max_tokens(5);
  r.set_logprobs(3);
  const GenerateOutcome out = RunGenerate(*stub_, r);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.final_info.usage().prompt_tokens(), 2);
  int n = 0;
  for (const v1::GenerateResponse& m : out.messages) {
    ASSERT_EQ(m.logprobs_size(), m.token_ids_size());
    for (int i = 0; i < m.logprobs_size(); ++i, ++n) {
      const v1::TokenLogprob& lp = m.logprobs(i);
      EXPECT_EQ(lp.token_id(), m.token_ids(i));
      EXPECT_LE(lp.logprob(), 0.0f);
      ASSERT_EQ(lp.top_logprobs_size(), 3);
      EXPECT_GE(lp.top_logprobs(0).logprob(), lp.top_logprobs(1).logprob());
      EXPECT_GE(lp.top_logprobs(1).logprob(), lp.top_logprobs(2).logprob());
      EXPECT_GE(lp.rank(), 1);
    }
  }
  EXPECT_EQ(n, 5);
}

TEST_F(GrpcE2eTest, StopTokenIdEndsTheSample) {
  const GenerateOutcome greedy = RunGenerate(*stub_, TextRequest("stop here", 10));
  ASSERT_TRUE(greedy.status.ok());
  const int32_t stop_id = greedy.token_ids[4];
  const size_t first = std::find(greedy.token_ids.begin(), greedy.token_ids.end(), stop_id) -
                       greedy.token_ids.begin();
  v1::GenerateRequest r = TextRequest("stop here", 10);
  r.add_stop_token_ids(stop_id);
  const GenerateOutcome out = RunGenerate(*stub_, r);
  ASSERT_TRUE(out.status.ok());
  EXPECT_EQ(out.token_ids.size(), first + 1);  // the stop id is included
  EXPECT_EQ(out.final_info.finish_reasons(0), v1::FINISH_REASON_STOP);
}

TEST_F(GrpcE2eTest, SeveralSamplesEachFinish) {
  v1::GenerateRequest r = TextRequest("Hi", 6);
  r.set_n(3);
  r.mutable_sampling()->set_temperature(0.8f);
  r.set_seed(7);
  const GenerateOutcome out = RunGenerate(*stub_, r);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  std::vector<int> per_sample(3, 0);
  for (const v1::GenerateResponse& m : out.messages) {
    if (!m.has_final()) per_sample.at(m.index()) += m.token_ids_size();
  }
  EXPECT_EQ(per_sample, std::vector<int>({6, 6, 6}));
  ASSERT_EQ(out.final_info.finish_reasons_size(), 3);
  EXPECT_EQ(out.final_info.usage().generated_tokens(), 18);
}

TEST_F(GrpcE2eTest, TokenizeDetokenizeListModels) {
  grpc::ClientContext c1;
  v1::TokenizeRequest treq;
  treq.set_text("hi");
  v1::TokenizeResponse tres;
  ASSERT_TRUE(stub_->Tokenize(&c1, treq, &tres).ok());
  EXPECT_EQ(std::vector<int32_t>(tres.token_ids().begin(), tres.token_ids().end()),
            std::vector<int32_t>({256, 'h', 'i'}));
  EXPECT_EQ(tres.tokens_size(), 3);
  EXPECT_EQ(tres.max_model_len(), 2048);

  grpc::ClientContext c2;
  v1::DetokenizeRequest dreq;
  dreq.add_token_ids(999);
  v1::DetokenizeResponse dres;
  const grpc::Status bad = stub_->Detokenize(&c2, dreq, &dres);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad.error_message().rfind("token_ids[0]", 0), 0u) << bad.error_message();

  grpc::ClientContext c3;
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&c3, v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).id(), "demo");
  EXPECT_TRUE(models.models(0).random_weights());
  EXPECT_TRUE(models.models(0).has_tokenizer());
  EXPECT_EQ(models.models(0).max_model_len(), 2048);
}

TEST_F(GrpcE2eTest, HealthAndReflection) {
  auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* service : {"", "tokenmill.v1.Inference"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse res;
    ASSERT_TRUE(health->Check(&ctx, req, &res).ok());
    EXPECT_EQ(res.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = reflection->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  grpc::reflection::v1alpha::ServerReflectionResponse res;
  ASSERT_TRUE(stream->Read(&res));
  std::vector<std::string> names;
  for (const auto& s : res.list_services_response().service()) names.push_back(s.name());
  EXPECT_NE(std::find(names.begin(), names.end(), "tokenmill.v1.Inference"), names.end());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(GrpcE2eTest, ClientCancellationMidStreamFreesBlocksAtOnce) {
  const int64_t generated_before = Stats(*stub_).scheduler().num_generated_tokens();
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, TextRequest("a long one", 1500));
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_GT(Stats(*stub_).kv_cache().num_used_blocks(), 0);
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectIdle();
  // It stopped where the client left, far from its 1500 tokens.
  EXPECT_LT(Stats(*stub_).scheduler().num_generated_tokens() - generated_before, 1000);
}

TEST_F(GrpcE2eTest, DeadlineIsTheRequestDeadline) {
  const int64_t generated_before = Stats(*stub_).scheduler().num_generated_tokens();
  const GenerateOutcome out = RunGenerate(*stub_, TextRequest("deadline", 1500), 0.3);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ExpectIdle();
  EXPECT_LT(Stats(*stub_).scheduler().num_generated_tokens() - generated_before, 1000);
}

struct BadRequest {
  const char* name;
  std::function<void(v1::GenerateRequest&)> mutate;
  grpc::StatusCode code;
  const char* message_prefix;
};

TEST_F(GrpcE2eTest, EveryBadRequestGetsItsCodeNamingTheField) {
  const std::vector<BadRequest> cases = {
      {"no input", [](auto& r) { r.clear_input(); }, grpc::StatusCode::INVALID_ARGUMENT, "input"},
      {"empty text", [](auto& r) { r.set_text(""); }, grpc::StatusCode::INVALID_ARGUMENT, "prompt"},
      {"max_tokens 0", [](auto& r) { r.set_max_tokens(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "max_tokens"},
      {"max_tokens huge", [](auto& r) { r.set_max_tokens(1 << 30); },
       grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"temperature", [](auto& r) { r.mutable_sampling()->set_temperature(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "SamplingParams.temperature"},
      {"top_p", [](auto& r) { r.mutable_sampling()->set_top_p(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "SamplingParams.top_p"},
      {"n", [](auto& r) { r.set_n(1000); }, grpc::StatusCode::INVALID_ARGUMENT, "n:"},
      {"logprobs", [](auto& r) { r.set_logprobs(50); }, grpc::StatusCode::INVALID_ARGUMENT,
       "logprobs"},
      {"stop count",
       [](auto& r) {
         // (A std::string, not "x": GCC 12 -Wrestrict misfires on the const char* overload.)
         const std::string x(1, 'x');
         for (int i = 0; i < 40; ++i) r.add_stop(x);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "stop"},
      {"empty stop", [](auto& r) { r.add_stop(""); }, grpc::StatusCode::INVALID_ARGUMENT,
       "stop[0]"},
      {"token id", [](auto& r) { r.mutable_token_ids()->add_ids(100000); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt: token id"},
      {"negative stop id", [](auto& r) { r.add_stop_token_ids(-3); },
       grpc::StatusCode::INVALID_ARGUMENT, "stop_token_ids[0]"},
      {"model", [](auto& r) { r.set_model("gpt-4"); }, grpc::StatusCode::NOT_FOUND, "model"},
      {"prompt longer than the context",
       [](auto& r) { r.mutable_token_ids()->mutable_ids()->Resize(3000, 65); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "prompt: 3000 tokens"},
  };
  for (const BadRequest& c : cases) {
    v1::GenerateRequest r = TextRequest("ok", 4);
    c.mutate(r);
    const GenerateOutcome out = RunGenerate(*stub_, r);
    EXPECT_EQ(out.status.error_code(), c.code) << c.name << ": " << out.status.error_message();
    EXPECT_EQ(out.status.error_message().rfind(c.message_prefix, 0), 0u)
        << c.name << ": " << out.status.error_message();
    EXPECT_TRUE(out.messages.empty()) << c.name;
  }
  ExpectIdle();
}

// tokenmill:request_rejections_total{error_code=`code`} summed over its samples, from /metrics.
double Rejections(const ServerProcess& server, const std::string& code) {
  auto res = MakeHttpClient(server)->Get("/metrics");
  EXPECT_TRUE(res && res->status == 200);
  if (!res) return -1;
  std::istringstream text(res->body);
  double sum = 0;
  for (std::string line; std::getline(text, line);) {
    if (line.rfind("tokenmill:request_rejections_total{", 0) == 0 &&
        line.find("error_code=\"" + code + "\"") != std::string::npos) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

// Issue #10: bytes that are not the method's request, on every method of the real server (the
// wire bytes written by hand, as a foreign client sends them), get INVALID_ARGUMENT naming the
// field or the message, counted; gRPC's own health and reflection services answer garbage with
// an error too, never a crash or a hang, and the server serves on.
TEST_F(GrpcE2eTest, EveryMethodRefusesBytesThatAreNotItsRequestNamingTheField) {
  struct RawCase {
    const char* method;
    std::optional<std::string> bytes;  // nullopt: no request message at all
    const char* message;
  };
  const std::string garbage = "\xFF\xFF\xFF not a message";
  const std::vector<RawCase> cases = {
      // text (field 2) = "ok\xFF\xFE"
      {"Tokenize", std::string("\x12\x04ok\xFF\xFE", 6), "text: is not valid UTF-8"},
      // chat (3) { messages (1) { content (2) = "\xC3(" } }
      {"Tokenize", std::string("\x1A\x06\x0A\x04\x12\x02\xC3\x28", 8),
       "chat.messages[0].content: is not valid UTF-8"},
      {"Tokenize", std::string("\x12\x09truncated", 6),
       "request: is not a valid tokenmill.v1.TokenizeRequest message"},
      {"Tokenize", std::nullopt,
       "request: the call carried no tokenmill.v1.TokenizeRequest message"},
      // model (1) = "\xC3(", token_ids (2) = [65]
      {"Detokenize", std::string("\x0A\x02\xC3\x28\x12\x01\x41", 7), "model: is not valid UTF-8"},
      {"Detokenize", garbage, "request: is not a valid tokenmill.v1.DetokenizeRequest message"},
      {"ListModels", garbage, "request: is not a valid tokenmill.v1.ListModelsRequest message"},
      {"ListModels", std::nullopt,
       "request: the call carried no tokenmill.v1.ListModelsRequest message"},
      {"GetStats", garbage, "request: is not a valid tokenmill.v1.GetStatsRequest message"},
      // text (2) = "hi", request_id (16) = "\xC3("
      {"Generate", std::string("\x12\x02hi\x82\x01\x02\xC3\x28", 9),
       "request_id: is not valid UTF-8"},
      {"Generate", garbage, "request: is not a valid tokenmill.v1.GenerateRequest message"},
  };
  auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
  const double refused_before = Rejections(*server_, "invalid_argument");
  for (const RawCase& c : cases) {
    const tokenmill::testing::RawCallOutcome out = tokenmill::testing::CallWithRawBytes(
        channel, std::string("/tokenmill.v1.Inference/") + c.method, c.bytes);
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.method << ": " << out.status.error_message();
    EXPECT_EQ(out.status.error_message(), c.message) << c.method;
    EXPECT_TRUE(out.replies.empty()) << c.method;
  }
  EXPECT_EQ(Rejections(*server_, "invalid_argument"), refused_before + cases.size());

  // gRPC's own services, with garbage or no message: health answers an error at once; the
  // reflection stream (gRPC's synchronous handler) takes an unreadable message for the end of
  // the client's stream and ends it OK, with no answer. Neither crashes nor hangs.
  for (const std::optional<std::string>& bytes :
       {std::optional<std::string>(garbage), std::optional<std::string>()}) {
    const char* what = bytes.has_value() ? "garbage" : "no message";
    const tokenmill::testing::RawCallOutcome check =
        tokenmill::testing::CallWithRawBytes(channel, "/grpc.health.v1.Health/Check", bytes, "", 5);
    EXPECT_FALSE(check.timed_out) << what;
    EXPECT_EQ(check.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << what;
    EXPECT_EQ(check.status.error_message(), "could not parse request") << what;
    const tokenmill::testing::RawCallOutcome watch =
        tokenmill::testing::CallWithRawBytes(channel, "/grpc.health.v1.Health/Watch", bytes, "", 5);
    EXPECT_FALSE(watch.timed_out) << what;
    EXPECT_FALSE(watch.status.ok()) << what;
    EXPECT_NE(watch.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << what;
    EXPECT_TRUE(watch.replies.empty()) << what;
    const tokenmill::testing::RawCallOutcome reflection = tokenmill::testing::CallWithRawBytes(
        channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", bytes, "", 5);
    EXPECT_FALSE(reflection.timed_out) << what;
    EXPECT_NE(reflection.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << what;
    EXPECT_TRUE(reflection.replies.empty()) << what;
  }
  // Reflection still answers a well-formed question.
  grpc::reflection::v1alpha::ServerReflectionRequest question;
  question.set_list_services("");
  const tokenmill::testing::RawCallOutcome listed = tokenmill::testing::CallWithRawBytes(
      channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      question.SerializeAsString());
  ASSERT_TRUE(listed.status.ok()) << listed.status.error_message();
  ASSERT_EQ(listed.replies.size(), 1u);
  grpc::reflection::v1alpha::ServerReflectionResponse answer;
  ASSERT_TRUE(answer.ParseFromString(listed.replies[0]));
  EXPECT_GT(answer.list_services_response().service_size(), 0);

  // Still serving, and healthy.
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext hctx;
  grpc::health::v1::HealthCheckResponse hres;
  ASSERT_TRUE(health->Check(&hctx, grpc::health::v1::HealthCheckRequest(), &hres).ok());
  EXPECT_EQ(hres.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  const GenerateOutcome out = RunGenerate(*stub_, TextRequest("still here", 4));
  EXPECT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.token_ids.size(), 4u);
  EXPECT_TRUE(server_->running());
  ExpectIdle();
}

TEST_F(GrpcE2eTest, SixtyFourConcurrentStreams) {
  constexpr int kStreams = 64;
  std::vector<std::thread> threads;
  std::vector<GenerateOutcome> outs(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = MakeStub(server_->grpc_address());
      v1::GenerateRequest r = TextRequest("stream " + std::to_string(i), 16);
      outs[i] = RunGenerate(*stub, r);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(outs[i].status.ok()) << i << ": " << outs[i].status.error_message();
    EXPECT_EQ(outs[i].token_ids.size(), 16u) << i;
    EXPECT_TRUE(outs[i].has_final) << i;
  }
  // Batched and served alone, a greedy request gives the same tokens.
  const GenerateOutcome alone = RunGenerate(*stub_, TextRequest("stream 5", 16));
  EXPECT_EQ(alone.token_ids, outs[5].token_ids);
  ExpectIdle();
}

}  // namespace
}  // namespace tokenmill::e2e

namespace tokenmill::e2e {
namespace {

// A real model and tokenizer (stories260K, a GGUF with its SentencePiece vocabulary): stop
// strings end the text before the match, over gRPC and HTTP alike.
TEST(RealModelE2eTest, StopStringsOnStories260K) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  auto server = ServerProcess::Start(
      {"--model", ::tokenmill::testing::TestdataPath("models/stories260K/stories260K.gguf")});
  ASSERT_NE(server, nullptr);
  auto stub = MakeStub(server->grpc_address());
  v1::GenerateRequest r;
  r.set_text("Once upon a time");
  r.set_max_tokens(40);
  r.mutable_sampling()->set_temperature(0);
  const GenerateOutcome full = RunGenerate(*stub, r);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  // Stop at the second word of the greedy continuation.
  const size_t space = full.text.find(' ', 1);
  ASSERT_NE(space, std::string::npos) << full.text;
  const size_t end = full.text.find(' ', space + 1);
  const std::string stop = full.text.substr(space, end - space);
  r.add_stop(stop);
  const GenerateOutcome stopped = RunGenerate(*stub, r);
  ASSERT_TRUE(stopped.status.ok());
  EXPECT_EQ(stopped.text, full.text.substr(0, space)) << "stop '" << stop << "'";
  EXPECT_EQ(stopped.final_info.finish_reasons(0), v1::FINISH_REASON_STOP);
  EXPECT_LT(stopped.token_ids.size(), full.token_ids.size());

  auto http = MakeHttpClient(*server);
  const nlohmann::json body = {{"model", "stories260K"},
                               {"prompt", "Once upon a time"},
                               {"max_tokens", 40},
                               {"temperature", 0},
                               {"stop", stop}};
  auto res = http->Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res && res->status == 200) << (res ? res->body : "");
  const nlohmann::json j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["choices"][0]["text"], full.text.substr(0, space));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["model"], "stories260K");
}

}  // namespace
}  // namespace tokenmill::e2e
