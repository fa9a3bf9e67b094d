#include "tokenmill/metrics/registry.h"

#include <cmath>
#include <thread>

#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"

namespace tokenmill::metrics {
namespace {

using testing::ParseExposition;
using testing::SampleValue;

TEST(RegistryTest, CountersAndGaugesKeepTheirValues) {
  MetricRegistry registry;
  Counter& c = registry.AddCounter({"tokenmill:requests_total", "Requests.", {}}).Get();
  Gauge& g = registry.AddGauge({"tokenmill:num_requests_running", "Running.", {}}).Get();
  c.Increment();
  c.Increment(2.5);
  g.Set(7);
  g.Add(-3);
  EXPECT_DOUBLE_EQ(c.value(), 3.5);
  EXPECT_DOUBLE_EQ(g.value(), 4.0);
}

TEST(RegistryTest, HistogramBucketBoundIsInclusive) {
  Histogram h({0.1, 1.0});
  h.Observe(0.1);  // le="0.1" includes 0.1
  h.Observe(0.5);
  h.Observe(1.0);
  h.Observe(50.0);  // +Inf only
  h.Observe(NAN);   // ignored
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{1, 3, 4}));
  EXPECT_EQ(s.count, 4u);
  EXPECT_DOUBLE_EQ(s.sum, 51.6);
}

TEST(RegistryTest, ExpositionParsesBackWithEscapes) {
  MetricRegistry registry;
  auto& counter = registry.AddCounter({"tokenmill:prompt_tokens_total",
                                       "Prompt tokens.\nSecond line with \\ backslash.",
                                       {{"tenant", nullptr}, {"model_name", nullptr}}});
  const std::string weird = "a\"quoted\\tenant\nwith newline";
  counter.WithLabels({weird, "llama"}).Increment(42);
  counter.WithLabels({"plain", "llama"}).Increment(1e6);
  registry.AddGauge({"tokenmill:kv_cache_usage_perc", "Usage.", {}}).Get().Set(0.25);
  auto& hist = registry.AddHistogram(
      {"tokenmill:time_to_first_token_seconds", "TTFT.", {{"model_name", nullptr}}},
      {0.005, 0.1, 2560});
  Histogram& h = hist.WithLabels({"llama"});
  for (double v : {0.001, 0.005, 0.05, 3.0, 5000.0}) h.Observe(v);

  const std::string text = registry.RenderText();
  auto parsed = ParseExposition(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  const auto& families = *parsed;
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families.at("tokenmill:prompt_tokens_total").help,
            "Prompt tokens.\nSecond line with \\ backslash.");
  EXPECT_EQ(families.at("tokenmill:prompt_tokens_total").type, "counter");
  EXPECT_EQ(SampleValue(families, "tokenmill:prompt_tokens_total", "tokenmill:prompt_tokens_total",
                        {{"tenant", weird}, {"model_name", "llama"}}),
            42);
  EXPECT_EQ(SampleValue(families, "tokenmill:prompt_tokens_total", "tokenmill:prompt_tokens_total",
                        {{"tenant", "plain"}}),
            1e6);
  EXPECT_EQ(families.at("tokenmill:kv_cache_usage_perc").type, "gauge");
  EXPECT_EQ(
      SampleValue(families, "tokenmill:kv_cache_usage_perc", "tokenmill:kv_cache_usage_perc", {}),
      0.25);
  const std::string ttft = "tokenmill:time_to_first_token_seconds";
  EXPECT_EQ(families.at(ttft).type, "histogram");
  EXPECT_EQ(SampleValue(families, ttft, ttft + "_bucket", {{"le", "0.005"}}), 2);
  EXPECT_EQ(SampleValue(families, ttft, ttft + "_bucket", {{"le", "0.1"}}), 3);
  EXPECT_EQ(SampleValue(families, ttft, ttft + "_bucket", {{"le", "2560"}}), 4);
  EXPECT_EQ(SampleValue(families, ttft, ttft + "_bucket", {{"le", "+Inf"}}), 5);
  EXPECT_EQ(SampleValue(families, ttft, ttft + "_count", {{"model_name", "llama"}}), 5);
  EXPECT_DOUBLE_EQ(SampleValue(families, ttft, ttft + "_sum", {}), 5003.056);
  // Raw lines a scraper sees.
  EXPECT_NE(text.find("# TYPE tokenmill:time_to_first_token_seconds histogram\n"),
            std::string::npos);
  EXPECT_NE(text.find("tokenmill:time_to_first_token_seconds_bucket{model_name=\"llama\","
                      "le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("tenant=\"a\\\"quoted\\\\tenant\\nwith newline\""), std::string::npos);
}

TEST(RegistryTest, LabelledFamilyWithoutChildrenRendersOnlyHeaders) {
  MetricRegistry registry;
  registry.AddCounter({"tokenmill:request_success_total", "Done.", {{"finished_reason", nullptr}}});
  EXPECT_EQ(registry.RenderText(),
            "# HELP tokenmill:request_success_total Done.\n"
            "# TYPE tokenmill:request_success_total counter\n");
}

TEST(RegistryTest, NamesFollowThePrometheusDataModel) {
  EXPECT_TRUE(IsValidMetricName("tokenmill:num_requests_running"));
  EXPECT_TRUE(IsValidMetricName("_x1"));
  EXPECT_FALSE(IsValidMetricName("1x"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_TRUE(IsValidLabelName("model_name"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
}

TEST(RegistryTest, LabelCapFoldsNewValuesIntoOther) {
  MetricRegistry registry;
  auto cap = std::make_shared<LabelValueCap>(2);
  auto& family =
      registry.AddCounter({"tokenmill:generation_tokens_total", "Tokens.", {{"tenant", cap}}});
  for (const char* tenant : {"a", "b", "c", "a", "d", "b"}) family.WithLabels({tenant}).Increment();
  auto parsed = ParseExposition(registry.RenderText());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::string name = "tokenmill:generation_tokens_total";
  EXPECT_EQ(parsed->at(name).samples.size(), 3u);
  EXPECT_EQ(SampleValue(*parsed, name, name, {{"tenant", "a"}}), 2);
  EXPECT_EQ(SampleValue(*parsed, name, name, {{"tenant", "b"}}), 2);
  EXPECT_EQ(SampleValue(*parsed, name, name, {{"tenant", "other"}}), 2);
  EXPECT_EQ(cap->num_tracked(), 2);
}

TEST(RegistryTest, ReRegisteringTheSameShapeReturnsTheSameFamily) {
  MetricRegistry registry;
  auto& a = registry.AddHistogram({"tokenmill:e2e_request_latency_seconds", "E2E.", {}}, {1, 2});
  auto& b = registry.AddHistogram({"tokenmill:e2e_request_latency_seconds", "E2E.", {}}, {1, 2});
  EXPECT_EQ(&a, &b);
  EXPECT_TRUE(registry.Contains("tokenmill:e2e_request_latency_seconds"));
  EXPECT_FALSE(registry.Contains("tokenmill:other"));
}

TEST(RegistryDeathTest, ConflictingShapesAndBadInputAbort) {
  MetricRegistry registry;
  registry.AddCounter({"tokenmill:x", "X.", {}});
  EXPECT_DEATH(registry.AddGauge({"tokenmill:x", "X.", {}}), "registered twice");
  EXPECT_DEATH(registry.AddCounter({"bad-name", "X.", {}}), "invalid metric name");
  EXPECT_DEATH(registry.AddHistogram({"tokenmill:h", "H.", {}}, {2, 1}), "increase strictly");
  EXPECT_DEATH(registry.AddHistogram({"tokenmill:h", "H.", {{"le", nullptr}}}, {1}), "reserved");
  auto& labelled = registry.AddCounter({"tokenmill:y", "Y.", {{"tenant", nullptr}}});
  EXPECT_DEATH(labelled.WithLabels({"a", "b"}), "expected 1 label values");
  EXPECT_DEATH(registry.AddCounter({"tokenmill:z", "Z.", {}}).Get().Increment(-1), ">= 0");
}

TEST(RegistryTest, ConcurrentUpdatesAreExact) {
  MetricRegistry registry;
  auto& counters = registry.AddCounter({"tokenmill:c_total", "C.", {{"t", nullptr}}});
  Histogram& h = registry.AddHistogram({"tokenmill:h", "H.", {}}, {0.5}).Get();
  constexpr int kThreads = 4, kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& mine = counters.WithLabels({t % 2 == 0 ? "even" : "odd"});
      for (int i = 0; i < kIters; ++i) {
        mine.Increment();
        h.Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Rendering concurrently with updates must be safe and always well-formed.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ParseExposition(registry.RenderText()).ok());
  for (auto& t : threads) t.join();
  EXPECT_EQ(counters.WithLabels({"even"}).value(), 2.0 * kIters);
  EXPECT_EQ(counters.WithLabels({"odd"}).value(), 2.0 * kIters);
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kIters));
  EXPECT_EQ(s.cumulative_counts[0], static_cast<uint64_t>(kThreads * kIters / 2));
  EXPECT_DOUBLE_EQ(s.sum, kThreads * kIters * 0.625);
}

TEST(RegistryTest, CollectHooksRunBeforeRenderingUntilRemoved) {
  MetricRegistry registry;
  Gauge& g = registry.AddGauge({"tokenmill:uptime_seconds", "Up.", {}}).Get();
  int calls = 0;
  const int id = registry.AddCollectHook([&] { g.Set(++calls); });
  EXPECT_NE(registry.RenderText().find("tokenmill:uptime_seconds 1\n"), std::string::npos);
  EXPECT_NE(registry.RenderText().find("tokenmill:uptime_seconds 2\n"), std::string::npos);
  registry.RemoveCollectHook(id);
  registry.RenderText();
  EXPECT_EQ(calls, 2);
}

TEST(RegistryTest, ValuesFormatLikePrometheusClients) {
  EXPECT_EQ(FormatPrometheusValue(0), "0");
  EXPECT_EQ(FormatPrometheusValue(12), "12");
  EXPECT_EQ(FormatPrometheusValue(0.005), "0.005");
  EXPECT_EQ(FormatPrometheusValue(2560), "2560");
  EXPECT_EQ(FormatPrometheusValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatPrometheusValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatPrometheusValue(NAN), "NaN");
  EXPECT_EQ(std::stod(FormatPrometheusValue(0.1 + 0.2)), 0.1 + 0.2);  // round-trips exactly
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");
}

TEST(RegistryTest, BucketSetsMatchVllm) {
  EXPECT_EQ(TtftBuckets().size(), 22u);
  EXPECT_EQ(TtftBuckets().front(), 0.001);
  EXPECT_EQ(TtftBuckets().back(), 2560.0);
  EXPECT_EQ(InterTokenBuckets().front(), 0.01);
  EXPECT_EQ(RequestLatencyBuckets().back(), 7680.0);
  EXPECT_EQ(OneTwoFiveBuckets(4096),
            (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000}));
  EXPECT_EQ(OneTwoFiveBuckets(100), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
}

}  // namespace
}  // namespace tokenmill::metrics
