// The front end in process, on the demo model: limits, admission, streaming, cancellation,
// drain and how a request's end maps to a status.
#include "tokenmill/api/frontend.h"

#include <thread>

#include "gtest/gtest.h"
#include "tokenmill/api/errors.h"
#include "tokenmill/server/engine_flags.h"

namespace tokenmill {
namespace {

class FrontendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bundle = LoadModelBundle("demo");
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = *std::move(bundle);
    EngineFlags flags;
    flags.max_model_len = 64;
    flags.kv_cache_blocks = 64;
    flags.threads = 1;
    // The demo model decodes 50 tokens in ~20 ms on an idle machine: faster than a cancel
    // sent after the second delta reaches the step thread. 2 ms per step keeps the tests
    // that stop a request mid-stream deterministic.
    flags.inject_faults = "step_delay_ms=2";
    auto engine = BuildEngine(bundle_, flags);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    limiter_ = std::make_unique<TenantLimiter>(
        std::map<std::string, TenantLimits>{{"small", {.tokens_per_minute = 20}}}, clock_);
    FrontendOptions options;
    options.model_name = "demo";
    options.limits.max_n = 4;
    options.limits.max_stop_strings = 2;
    frontend_ = std::make_unique<Frontend>(*engine_, bundle_, auth_, limiter_.get(), options);
  }

  static ClientRequest Text(const std::string& text, int max_tokens) {
    ClientRequest r;
    r.input.prompt = text;
    r.input.sampling.temperature = 0;
    r.input.sampling.ignore_eos = true;
    r.max_tokens = max_tokens;
    return r;
  }
  absl::Status StartError(ClientRequest r, const Principal& who = Principal{}) {
    auto a = frontend_->Start(who, std::move(r));
    return a.ok() ? absl::OkStatus() : a.status();
  }
  void ExpectIdle() {
    ASSERT_TRUE(engine_->WaitUntilIdle(5));
    EXPECT_EQ(engine_->stats().kv.num_used_blocks, 0);
    EXPECT_EQ(frontend_->num_active(), 0);
  }

  FakeClock clock_;
  ModelBundle bundle_;
  std::unique_ptr<Engine> engine_;
  Authenticator auth_;
  std::unique_ptr<TenantLimiter> limiter_;
  std::unique_ptr<Frontend> frontend_;
};

TEST_F(FrontendTest, StreamsARequestToItsEnd) {
  auto a = frontend_->Start(Principal{}, Text("Hi", 5));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(frontend_->num_active(), 1);
  std::string streamed;
  int finished = 0;
  const CompletionResult& r = (*a)->Collect([&](const CompletionDelta& d) {
    streamed += d.text;
    finished += d.finish_reason != FinishReason::kNone;
  });
  EXPECT_TRUE((*a)->TerminalStatus().ok());
  EXPECT_EQ(r.choices[0].ids.size(), 5u);
  EXPECT_EQ(r.choices[0].text, streamed);
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(r.usage.record.tenant, "default");
  EXPECT_EQ(r.usage.record.model, "demo");
  a->reset();
  ExpectIdle();
}

TEST_F(FrontendTest, DefaultMaxTokensComesFromTheLimits) {
  ClientRequest r = Text("Hi", 1);
  r.max_tokens.reset();
  auto a = frontend_->Start(Principal{}, std::move(r));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->Collect(nullptr).usage.generated_tokens, 16);
}

TEST_F(FrontendTest, LimitsGivePreciseErrors) {
  ClientRequest r = Text("x", 4);
  r.input.n = 5;
  EXPECT_EQ(StartError(r).message(), "n: must be in [1, 4], got 5");
  r = Text("x", 4);
  r.input.stop = {"a", "b", "c"};
  EXPECT_EQ(StartError(r).message(), "stop: 3 stop strings exceed the limit of 2");
  r = Text("x", 4);
  r.input.stop = {std::string(300, 's')};
  EXPECT_EQ(StartError(r).message(), "stop[0]: 300 bytes exceed the limit of 256");
  r = Text("bad \xFF utf8", 4);
  EXPECT_EQ(StartError(r).message(), "prompt: is not valid UTF-8");
  r = Text("", 4);
  EXPECT_EQ(StartError(r).message(), "prompt: must not be empty");
  r = Text("x", 65);
  EXPECT_EQ(StartError(r).message(), "max_tokens: 65 exceeds the limit of 64");
  r = Text("x", 4);
  r.input.sampling.logprobs = 21;
  EXPECT_EQ(StartError(r).message(), "logprobs: must be in [0, 20], got 21");
  r = Text("x", 4);
  r.model = "other";
  EXPECT_EQ(StartError(r).code(), absl::StatusCode::kNotFound);
  r = Text("x", 4);
  r.input.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", 1}}});
  r.input.prompt.reset();
  EXPECT_EQ(StartError(r).message(), "messages[0].content: must be a string");
  EXPECT_EQ(frontend_->num_active(), 0);
}

TEST_F(FrontendTest, APromptLongerThanTheContextIsResourceExhaustedWithItsReason) {
  const absl::Status s = StartError(Text(std::string(100, 'a'), 4));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(s), ErrorReason::kContextLengthExceeded);
  EXPECT_EQ(s.message(),
            "prompt: 101 tokens exceed the limit of 63 prompt tokens (the model's context is 64 "
            "tokens)");
}

TEST_F(FrontendTest, TenantQuotaIsCheckedBeforeTheEngine) {
  const Principal small{"small", false};
  const absl::Status s = StartError(Text("abc", 30), small);  // 4 + 30 > 20
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(s), ErrorReason::kQuotaExceeded);
  EXPECT_EQ(engine_->stats().scheduler.num_finished_requests, 0);
  auto ok = frontend_->Start(small, Text("abc", 10));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)->Collect(nullptr).usage.record.tenant, "small");
}

TEST_F(FrontendTest, CancelEndsTheRequestAndFreesItsBlocks) {
  auto a = frontend_->Start(Principal{}, Text("cancel me", 50));
  ASSERT_TRUE(a.ok());
  ActiveRequest* active = a->get();
  int deltas = 0;
  const CompletionResult& r = active->Collect([&](const CompletionDelta&) {
    if (++deltas == 2) active->Cancel();
  });
  EXPECT_EQ(active->TerminalStatus().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(r.usage.generated_tokens, 50);
  EXPECT_EQ(r.usage.record.finish_reason, "abort");
  a->reset();
  ExpectIdle();
}

TEST_F(FrontendTest, DroppingAnUncollectedRequestCancelsIt) {
  auto a = frontend_->Start(Principal{}, Text("never read", 50));
  ASSERT_TRUE(a.ok());
  a->reset();
  ExpectIdle();
  EXPECT_LT(engine_->stats().scheduler.num_generated_tokens, 50);
}

TEST_F(FrontendTest, DrainRefusesNewRequestsAndLetsOthersFinish) {
  auto a = frontend_->Start(Principal{}, Text("in flight", 20));
  ASSERT_TRUE(a.ok());
  frontend_->StartDrain();
  EXPECT_TRUE(frontend_->draining());
  EXPECT_EQ(StartError(Text("late", 2)).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(frontend_->WaitUntilNoActive(0.01));
  std::thread t([&] {
    EXPECT_EQ((*a)->Collect(nullptr).usage.generated_tokens, 20);
    a->reset();
  });
  EXPECT_TRUE(frontend_->WaitUntilNoActive(10));
  t.join();
}

TEST_F(FrontendTest, EngineShutdownMidStreamIsUnavailable) {
  auto a = frontend_->Start(Principal{}, Text("shutdown", 60));
  ASSERT_TRUE(a.ok());
  bool shut = false;
  (*a)->Collect([&](const CompletionDelta&) {
    if (!shut) {
      shut = true;
      engine_->Shutdown();
    }
  });
  EXPECT_EQ((*a)->TerminalStatus().code(), absl::StatusCode::kUnavailable);
}

TEST_F(FrontendTest, TokenizeUsesTheSameChecks) {
  CompletionInput in;
  in.prompt = "hi";
  auto ids = frontend_->Tokenize(in);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, std::vector<int32_t>({256, 'h', 'i'}));
  in.prompt = "\xC3";
  EXPECT_EQ(frontend_->Tokenize(in).status().message(), "prompt: is not valid UTF-8");
}

TEST_F(FrontendTest, AdminCheck) {
  EXPECT_TRUE(Frontend::RequireAdmin(Principal{}, "x").ok());
  EXPECT_EQ(Frontend::RequireAdmin(Principal{"acme", false}, "GetStats").code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace tokenmill
