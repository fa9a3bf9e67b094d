// Load models against a fake target: closed-loop concurrency, Poisson arrivals, request
// and duration bounds, session turn order, builder errors, progress output.
#include "tokenmill/loadgen/runner.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"

namespace tokenmill::loadgen {
namespace {

// Answers every request after `latency_s` with max_tokens tokens; records concurrency.
class FakeTarget final : public Target {
 public:
  explicit FakeTarget(double latency_s) : latency_s_(latency_s) {}
  std::string kind() const override { return "fake"; }
  bool accepts_token_ids() const override { return true; }

  RequestResult Send(const TargetRequest& req) override {
    const int now = ++in_flight_;
    int prev = max_in_flight_.load();
    while (now > prev && !max_in_flight_.compare_exchange_weak(prev, now)) {
    }
    RequestResult r;
    r.send_s = SystemClock::Get().NowSeconds();
    std::this_thread::sleep_for(std::chrono::duration<double>(latency_s_));
    r.first_token_s = SystemClock::Get().NowSeconds();
    r.chunk_times_s = {*r.first_token_s};
    r.output_tokens = req.max_tokens;
    r.end_s = *r.first_token_s;
    --in_flight_;
    std::lock_guard<std::mutex> lock(mu_);
    ids_.push_back(req.id);
    prompt_sizes_.push_back(req.prompt_ids.size());
    return r;
  }

  int max_in_flight() const { return max_in_flight_.load(); }
  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }

 private:
  const double latency_s_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::mutex mu_;
  std::vector<std::string> ids_;
  std::vector<size_t> prompt_sizes_;
};

WorkloadGenerator Gen(const std::string& spec) {
  static const auto src = [] {
    TokenSource s;
    for (int i = 0; i < 50; ++i) s.content_ids.push_back(i);
    s.bos_id = 99;
    return std::make_shared<const TokenSource>(s);
  }();
  auto g = WorkloadGenerator::Create(*ParseWorkloadSpec(spec), src, 1, 100000);
  EXPECT_TRUE(g.ok()) << g.status();
  return *std::move(g);
}

RequestBuilder Builder() {
  return [](const Session& s, int turn) -> absl::StatusOr<TargetRequest> {
    TargetRequest r;
    r.id = std::to_string(s.index) + "/" + std::to_string(turn);
    r.prompt_ids = s.PromptIds(turn);
    r.max_tokens = s.turns[turn].max_tokens;
    return r;
  };
}

TEST(RunnerTest, ClosedLoopKeepsConcurrencyAndIssuesExactlyTheRequests) {
  FakeTarget target(0.02);
  RunOptions o;
  o.load = {LoadMode::kConcurrency, 4};
  o.num_requests = 24;
  auto r = RunLoad(target, Gen("fixed:10:3"), Builder(), o, nullptr, "t");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->samples.size(), 24u);
  EXPECT_EQ(target.max_in_flight(), 4);
  EXPECT_EQ(r->num_sessions, 24);
  std::vector<std::string> ids = target.ids();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());  // every session once
  for (const RequestSample& s : r->samples) {
    EXPECT_EQ(s.prompt_tokens, 10);
    EXPECT_EQ(s.result.output_tokens, 3);
  }
  // 24 requests of 20 ms at 4 in flight take about 6 x 20 ms.
  EXPECT_GE(r->end_s - r->start_s, 0.11);
}

TEST(RunnerTest, PoissonArrivalsAtTheRate) {
  FakeTarget target(0.001);
  RunOptions o;
  o.load = {LoadMode::kRate, 400};
  o.num_requests = 200;
  o.arrival_seed = 9;
  auto r = RunLoad(target, Gen("fixed:4:1"), Builder(), o, nullptr, "t");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->samples.size(), 200u);
  std::vector<double> arrivals;
  for (const RequestSample& s : r->samples) arrivals.push_back(s.scheduled_s);
  std::sort(arrivals.begin(), arrivals.end());
  // 199 exponential gaps of mean 2.5 ms: their mean is within ~25% (3.5 standard errors).
  const double mean_gap = (arrivals.back() - arrivals.front()) / 199;
  EXPECT_NEAR(mean_gap, 1.0 / 400, 0.25 / 400);
  // Gaps vary as an exponential's do (coefficient of variation ~1), unlike a fixed pace.
  double var = 0;
  for (size_t i = 1; i < arrivals.size(); ++i) {
    const double g = arrivals[i] - arrivals[i - 1] - mean_gap;
    var += g * g;
  }
  EXPECT_GT(std::sqrt(var / 198) / mean_gap, 0.6);
  // Requests are sent when they arrive (the client keeps up at this rate); loose bounds, as
  // a shared CI machine may stall a thread now and then.
  std::vector<double> delays;
  for (const RequestSample& s : r->samples) delays.push_back(s.result.send_s - s.scheduled_s);
  std::sort(delays.begin(), delays.end());
  EXPECT_GE(delays.front(), 0.0);
  EXPECT_LT(delays[delays.size() / 2], 0.02);
}

TEST(RunnerTest, SameArrivalSeedSameSchedule) {
  auto schedule = [](uint64_t seed) {
    FakeTarget target(0);
    RunOptions o;
    o.load = {LoadMode::kRate, 1000};
    o.num_requests = 20;
    o.arrival_seed = seed;
    auto r = RunLoad(target, Gen("fixed:4:1"), Builder(), o, nullptr, "t");
    std::map<int64_t, double> at;
    for (const RequestSample& s : r->samples) at[s.session] = s.scheduled_s - r->start_s;
    std::vector<double> v;
    for (const auto& [i, t] : at) v.push_back(t);
    return v;
  };
  const std::vector<double> a = schedule(5), b = schedule(5), c = schedule(6);
  ASSERT_EQ(a.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-9);
  EXPECT_GT(std::abs(a.back() - c.back()), 1e-6);
}

TEST(RunnerTest, DurationBoundsTheRun) {
  FakeTarget target(0.01);
  RunOptions o;
  o.load = {LoadMode::kConcurrency, 2};
  o.duration_s = 0.2;
  auto r = RunLoad(target, Gen("fixed:4:1"), Builder(), o, nullptr, "t");
  ASSERT_TRUE(r.ok());
  // At most 2 x 0.2 s / 10 ms issued (plus the two in flight at the bound); at least a few
  // even when the machine is busy.
  EXPECT_GE(r->samples.size(), 4u);
  EXPECT_LE(r->samples.size(), 44u);
  EXPECT_LT(r->end_s - r->start_s, 2.0);
}

TEST(RunnerTest, AgenticTurnsRunInOrderWithinASession) {
  FakeTarget target(0.002);
  RunOptions o;
  o.load = {LoadMode::kConcurrency, 3};
  o.num_requests = 30;
  auto r = RunLoad(target, Gen("agentic:system=20,turns=4-6,think=0.002,user_median=5"), Builder(),
                   o, nullptr, "t");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->samples.size(), 30u);
  std::map<int64_t, std::vector<const RequestSample*>> by_session;
  for (const RequestSample& s : r->samples) by_session[s.session].push_back(&s);
  EXPECT_GE(by_session.size(), 5u);
  EXPECT_LE(by_session.size(), 10u);
  for (const auto& [session, turns] : by_session) {
    for (size_t t = 0; t < turns.size(); ++t) {
      EXPECT_EQ(turns[t]->turn, static_cast<int>(t));
      if (t > 0) {
        EXPECT_GT(turns[t]->prompt_tokens, turns[t - 1]->prompt_tokens);
        EXPECT_GE(turns[t]->result.send_s, turns[t - 1]->result.end_s);  // think, then send
      }
    }
  }
}

TEST(RunnerTest, BuilderErrorsAbortTheRun) {
  FakeTarget target(0);
  RunOptions o;
  o.num_requests = 10;
  auto r = RunLoad(
      target, Gen("fixed:4:1"),
      [](const Session&, int) -> absl::StatusOr<TargetRequest> {
        return absl::InvalidArgumentError("no text of that length");
      },
      o, nullptr, "t");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(target.ids().empty());
  o.num_requests = 0;
  EXPECT_FALSE(RunLoad(target, Gen("fixed:4:1"), Builder(), o, nullptr, "t").ok());
}

TEST(ProgressTest, PlainLinesEachTenPercentWhenNotATerminal) {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&buf, &size);
  {
    Progress p(out, /*is_tty=*/false);
    p.Start("c=4", 20, 0, 0.0);
    for (int i = 0; i < 20; ++i) p.RequestDone(i != 3, 10, 0.1 * (i + 1));
    p.Finish(2.0);
  }
  std::fclose(out);
  const std::string text(buf, size);
  free(buf);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 10);  // 10%..90%, then the end
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_NE(text.find("c=4 [###...."), std::string::npos);
  EXPECT_NE(text.find("20/20 req"), std::string::npos);
  EXPECT_NE(text.find("errors 1"), std::string::npos);
  EXPECT_NE(text.find("100.0 tok/s"), std::string::npos);  // 200 tokens in 2 s
}

TEST(ProgressTest, DurationBoundPhaseShowsTime) {
  Progress p(nullptr, true);
  p.Start("rate 2 req/s", 0, 10.0, 100.0);
  p.RequestDone(true, 5, 102.5);
  EXPECT_NE(p.Line(105.0).find(" 50%"), std::string::npos);
}

}  // namespace
}  // namespace tokenmill::loadgen
