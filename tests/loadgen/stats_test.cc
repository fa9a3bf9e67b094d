// Report math on recorded fake timings: percentiles, TTFT/TPOT/ITL/e2e, throughput,
// goodput under SLOs, prefix-cache hit rate, energy and cost, errors.
#include "tokenmill/loadgen/stats.h"

#include "gtest/gtest.h"

namespace tokenmill::loadgen {
namespace {

// A completed request: sent at `send`, first token after `ttft`, then one token every
// `gap` seconds, `n` output tokens in all (each its own chunk).
RequestSample Done(double send, double ttft, double gap, int n, int prompt = 100) {
  RequestSample s;
  s.prompt_tokens = prompt;
  s.max_tokens = n;
  s.scheduled_s = send;
  RequestResult& r = s.result;
  r.send_s = send;
  r.first_token_s = send + ttft;
  for (int i = 0; i < n; ++i) r.chunk_times_s.push_back(send + ttft + i * gap);
  r.end_s = r.chunk_times_s.back();
  r.output_tokens = n;
  r.output_tokens_from_usage = true;
  r.prompt_tokens = prompt;
  r.finish_reason = "length";
  return s;
}

RequestSample Failed(double send, double end, const std::string& code) {
  RequestSample s;
  s.prompt_tokens = 100;
  s.max_tokens = 10;
  s.scheduled_s = send;
  s.result.send_s = send;
  s.result.end_s = end;
  s.result.error_code = code;
  return s;
}

TEST(SummarizeTest, InterpolatesLikeNumpy) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);  // shuffled order must not matter
  std::swap(v[3], v[90]);
  const Summary s = Summarize(v);
  EXPECT_EQ(s.count, 100);
  EXPECT_DOUBLE_EQ(*s.p50, 50.5);  // numpy.percentile(range(1, 101), 50)
  EXPECT_DOUBLE_EQ(*s.p90, 90.1);
  EXPECT_DOUBLE_EQ(*s.p99, 99.01);
  EXPECT_DOUBLE_EQ(*s.mean, 50.5);
  const Summary one = Summarize({0.25});
  EXPECT_DOUBLE_EQ(*one.p50, 0.25);
  EXPECT_DOUBLE_EQ(*one.p99, 0.25);
  const Summary none = Summarize({});
  EXPECT_FALSE(none.p50.has_value());
  EXPECT_FALSE(none.mean.has_value());
}

TEST(PointMetricsTest, LatenciesAndThroughputFromTimings) {
  // Two requests over [10, 12]: 0.5 s and 0.3 s to the first token, then 10 and 5 tokens.
  std::vector<RequestSample> samples = {Done(10.0, 0.5, 0.1, 11, 100), Done(10.5, 0.3, 0.2, 6, 50)};
  // ends: 10 + 0.5 + 1.0 = 11.5 and 10.5 + 0.3 + 1.0 = 11.8
  const PointMetrics m = ComputePointMetrics(samples, Slo{});
  EXPECT_EQ(m.num_requests, 2);
  EXPECT_EQ(m.num_completed, 2);
  EXPECT_EQ(m.num_errors, 0);
  EXPECT_DOUBLE_EQ(m.duration_s, 1.8);
  EXPECT_DOUBLE_EQ(m.request_throughput_req_s, 2 / 1.8);
  EXPECT_DOUBLE_EQ(m.output_throughput_tok_s, 17 / 1.8);
  EXPECT_DOUBLE_EQ(m.total_token_throughput_tok_s, (17 + 150) / 1.8);
  EXPECT_EQ(m.prompt_tokens, 150);
  EXPECT_EQ(m.output_tokens, 17);
  EXPECT_NEAR(*m.ttft_s.p50, 0.4, 1e-12);
  EXPECT_NEAR(*m.ttft_s.mean, 0.4, 1e-12);
  EXPECT_NEAR(*m.tpot_s.p50, 0.15, 1e-12);  // (1.0/10 + 1.0/5) / 2
  EXPECT_NEAR(*m.tpot_s.p99, 0.1 + 0.99 * 0.1, 1e-12);
  EXPECT_EQ(m.itl_s.count, 10 + 5);
  EXPECT_NEAR(*m.itl_s.p50, 0.1, 1e-9);  // ten gaps of 0.1, five of 0.2
  EXPECT_NEAR(*m.itl_s.p90, 0.2, 1e-9);
  EXPECT_NEAR(*m.itl_s.mean, (10 * 0.1 + 5 * 0.2) / 15, 1e-12);
  EXPECT_NEAR(*m.e2e_s.p50, 1.4, 1e-12);  // 1.5 and 1.3
  EXPECT_DOUBLE_EQ(*m.dispatch_delay_s.p99, 0.0);
  EXPECT_FALSE(m.goodput_req_s.has_value());  // no SLO given
  EXPECT_FALSE(m.prefix_cache_hit_rate.has_value());
  EXPECT_FALSE(m.joules.has_value());
  EXPECT_FALSE(m.tokens_per_joule.has_value());
  EXPECT_FALSE(m.cost_per_1m_tokens.has_value());
  EXPECT_EQ(m.energy_source, "none");
  EXPECT_EQ(m.finish_reasons.at("length"), 2);
  EXPECT_EQ(m.num_output_length_mismatches, 0);
}

TEST(PointMetricsTest, GoodputCountsRequestsMeetingEverySlo) {
  std::vector<RequestSample> samples = {
      Done(0.0, 0.1, 0.01, 20),  // meets both
      Done(0.0, 0.9, 0.01, 20),  // TTFT too slow
      Done(0.0, 0.1, 0.08, 20),  // TPOT too slow
      Done(0.0, 0.2, 0.02, 1),   // one token: no TPOT to violate
  };
  samples.push_back(Failed(0.0, 2.0, "http_503"));  // errors never count as good
  Slo slo{.ttft_s = 0.5, .tpot_s = 0.05};
  const PointMetrics m = ComputePointMetrics(samples, slo);
  EXPECT_EQ(m.num_good, 2);
  ASSERT_TRUE(m.goodput_req_s.has_value());
  EXPECT_DOUBLE_EQ(*m.goodput_req_s, 2 / m.duration_s);
  EXPECT_DOUBLE_EQ(m.duration_s, 2.0);
  // Only TTFT checked.
  EXPECT_EQ(ComputePointMetrics(samples, Slo{.ttft_s = 0.5, .tpot_s = std::nullopt}).num_good, 3);
  EXPECT_EQ(ComputePointMetrics(samples, Slo{.ttft_s = std::nullopt, .tpot_s = 0.05}).num_good, 3);
}

TEST(PointMetricsTest, ErrorsAreCountedByCodeAndLeaveLatenciesAlone) {
  std::vector<RequestSample> samples = {Done(0, 0.1, 0.1, 3), Failed(0, 0.2, "http_503"),
                                        Failed(0.1, 0.3, "http_503"),
                                        Failed(0.2, 5.0, "connection")};
  const PointMetrics m = ComputePointMetrics(samples, Slo{});
  EXPECT_EQ(m.num_requests, 4);
  EXPECT_EQ(m.num_completed, 1);
  EXPECT_EQ(m.num_errors, 3);
  EXPECT_EQ(m.errors_by_code.at("http_503"), 2);
  EXPECT_EQ(m.errors_by_code.at("connection"), 1);
  EXPECT_EQ(m.ttft_s.count, 1);
  EXPECT_EQ(m.e2e_s.count, 1);
  EXPECT_DOUBLE_EQ(m.duration_s, 5.0);  // failed requests still span the window
  EXPECT_DOUBLE_EQ(m.output_throughput_tok_s, 3 / 5.0);
}

TEST(PointMetricsTest, PrefixCacheEnergyAndCostFromUsage) {
  RequestSample a = Done(0, 0.1, 0.1, 10, 200);
  a.result.cached_tokens = 150;
  a.result.joules = 20.0;
  a.result.cost = 0.002;
  a.result.currency = "USD";
  a.result.energy_source = "nvml";
  RequestSample b = Done(0, 0.1, 0.1, 30, 100);
  b.result.cached_tokens = 0;
  b.result.joules = 10.0;
  b.result.cost = 0.001;
  b.result.currency = "USD";
  b.result.energy_source = "nvml";
  RequestSample c = Done(0, 0.1, 0.1, 10, 100);  // reported nothing: not in the sums
  const PointMetrics m = ComputePointMetrics({a, b, c}, Slo{});
  EXPECT_DOUBLE_EQ(*m.prefix_cache_hit_rate, 150.0 / 300.0);
  EXPECT_DOUBLE_EQ(*m.joules, 30.0);
  EXPECT_DOUBLE_EQ(*m.tokens_per_joule, (210.0 + 130.0) / 30.0);
  EXPECT_DOUBLE_EQ(*m.output_tokens_per_joule, 40.0 / 30.0);
  EXPECT_EQ(m.energy_source, "nvml");
  EXPECT_DOUBLE_EQ(*m.cost, 0.003);
  EXPECT_EQ(m.currency, "USD");
  EXPECT_DOUBLE_EQ(*m.cost_per_1m_tokens, 0.003 / 340.0 * 1e6);
  EXPECT_DOUBLE_EQ(*m.cost_per_1m_output_tokens, 0.003 / 40.0 * 1e6);
}

TEST(PointMetricsTest, ZeroCostEverywhereMeansNoPricesNotFree) {
  RequestSample a = Done(0, 0.1, 0.1, 10);
  a.result.cost = 0.0;
  a.result.currency = "USD";
  RequestSample b = a;
  const PointMetrics m = ComputePointMetrics({a, b}, Slo{});
  EXPECT_FALSE(m.cost.has_value());
  EXPECT_FALSE(m.cost_per_1m_tokens.has_value());
  b.result.cost = 0.01;  // one priced request: the zero is a real (rounded) figure
  EXPECT_DOUBLE_EQ(*ComputePointMetrics({a, b}, Slo{}).cost, 0.01);
}

TEST(PointMetricsTest, LengthMismatchesAndDispatchDelay) {
  RequestSample a = Done(1.0, 0.1, 0.1, 5);
  a.result.prompt_tokens = 99;  // the server counted another prompt length
  a.scheduled_s = 0.5;          // sent 0.5 s after its arrival
  RequestSample b = Done(1.0, 0.1, 0.1, 5);
  b.max_tokens = 8;  // stopped early (EOS not ignored)
  const PointMetrics m = ComputePointMetrics({a, b}, Slo{});
  EXPECT_EQ(m.num_prompt_length_mismatches, 1);
  EXPECT_EQ(m.num_output_length_mismatches, 1);
  EXPECT_DOUBLE_EQ(*m.dispatch_delay_s.p99, 0.99 * 0.5);  // delays 0 and 0.5
}

TEST(PointMetricsTest, NoSamplesGiveZerosAndNulls) {
  const PointMetrics m = ComputePointMetrics({}, Slo{.ttft_s = 1, .tpot_s = std::nullopt});
  EXPECT_EQ(m.num_requests, 0);
  EXPECT_EQ(m.duration_s, 0);
  EXPECT_EQ(m.output_throughput_tok_s, 0);
  EXPECT_FALSE(m.ttft_s.p50.has_value());
}

}  // namespace
}  // namespace tokenmill::loadgen
