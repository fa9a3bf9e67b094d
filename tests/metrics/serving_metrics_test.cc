#include "tokenmill/metrics/serving_metrics.h"

#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"

namespace tokenmill::metrics {
namespace {

using testing::HasSample;
using testing::ParsedFamily;
using testing::ParseExposition;
using testing::SampleValue;

std::map<std::string, ParsedFamily> Scrape(const MetricRegistry& registry) {
  const std::string text = registry.RenderText();
  auto parsed = ParseExposition(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  return parsed.ok() ? *parsed : std::map<std::string, ParsedFamily>{};
}

ServingMetricsOptions Options(const std::string& model, EnergySource source = EnergySource::kNone,
                              int max_tenants = 32) {
  ServingMetricsOptions o;
  o.model_name = model;
  o.energy_source = source;
  o.max_tenants = max_tenants;
  return o;
}

RequestRecord Finished(const std::string& tenant, std::optional<double> joules,
                       EnergySource source) {
  RequestRecord r;
  r.tenant = tenant;
  r.model = "llama";
  r.prompt_tokens = 100;
  r.cached_tokens = 32;
  r.generated_tokens = 20;
  r.queue_s = 0.05;
  r.ttft_s = 0.2;
  r.tpot_s = 0.03;
  r.e2e_s = 0.8;
  r.device_s = 0.5;
  r.joules = joules;
  r.energy_source = joules ? source : EnergySource::kNone;
  r.cost = 0.001;
  r.currency = "EUR";
  r.finish_reason = "stop";
  return r;
}

TEST(ServingMetricsTest, RegistersEveryMetricTheIssueNames) {
  MetricRegistry registry;
  FakeClock clock;
  ServingMetrics metrics(registry, clock, Options("llama", EnergySource::kNvml));
  const auto families = Scrape(registry);
  for (const char* name : {"num_requests_running",
                           "num_requests_waiting",
                           "kv_cache_usage_perc",
                           "prefix_cache_queries_total",
                           "prefix_cache_hits_total",
                           "num_preemptions_total",
                           "prompt_tokens_total",
                           "generation_tokens_total",
                           "request_success_total",
                           "time_to_first_token_seconds",
                           "inter_token_latency_seconds",
                           "request_time_per_output_token_seconds",
                           "e2e_request_latency_seconds",
                           "request_queue_time_seconds",
                           "energy_joules_total",
                           "cost_total",
                           "uptime_seconds",
                           "request_prompt_tokens",
                           "request_generation_tokens",
                           "prompt_tokens_cached_total",
                           "request_errors_total",
                           "batch_occupancy_perc",
                           "prefix_cache_hit_rate",
                           "iteration_tokens_total",
                           "step_duration_seconds",
                           "step_energy_joules_total",
                           "engine_failed_steps_total",
                           "request_device_seconds_total",
                           "energy_source_info"}) {
    EXPECT_TRUE(families.count(std::string("tokenmill:") + name)) << name;
  }
  EXPECT_EQ(families.at("tokenmill:time_to_first_token_seconds").type, "histogram");
  EXPECT_EQ(families.at("tokenmill:request_success_total").type, "counter");
  EXPECT_EQ(families.at("tokenmill:num_requests_running").type, "gauge");
}

TEST(ServingMetricsTest, EnergyIsAbsentNotZeroWithoutAMeter) {
  MetricRegistry registry;
  FakeClock clock;
  ServingMetrics metrics(registry, clock, Options("llama"));
  EXPECT_FALSE(metrics.exports_energy());
  metrics.RecordStep({.duration_ns = 1000000, .energy_uj = std::nullopt, .work = {{1, 8}}}, 64);
  metrics.RecordFinishedRequest(Finished("acme", std::nullopt, EnergySource::kNone));
  const std::string text = registry.RenderText();
  EXPECT_EQ(text.find("energy_joules"), std::string::npos) << text;
  EXPECT_EQ(text.find("gpu_power"), std::string::npos);
  const auto families = Scrape(registry);
  EXPECT_EQ(SampleValue(families, "tokenmill:energy_source_info", "tokenmill:energy_source_info",
                        {{"energy_source", "none"}}),
            1);
  // Cost without energy still counts (device time only).
  EXPECT_DOUBLE_EQ(SampleValue(families, "tokenmill:cost_total", "tokenmill:cost_total",
                               {{"tenant", "acme"}, {"currency", "EUR"}}),
                   0.001);
}

TEST(ServingMetricsTest, EstimatedEnergyIsLabelledEstimated) {
  MetricRegistry registry;
  FakeClock clock;
  ServingMetrics metrics(registry, clock, Options("llama", EnergySource::kEstimated));
  metrics.RecordStep({.duration_ns = 10, .energy_uj = 2500000, .work = {{1, 8}}}, 64);
  metrics.RecordFinishedRequest(Finished("acme", 2.5, EnergySource::kEstimated));
  const auto f = Scrape(registry);
  EXPECT_DOUBLE_EQ(SampleValue(f, "tokenmill:energy_joules_total", "tokenmill:energy_joules_total",
                               {{"tenant", "acme"}, {"energy_source", "estimated"}}),
                   2.5);
  EXPECT_DOUBLE_EQ(
      SampleValue(f, "tokenmill:step_energy_joules_total", "tokenmill:step_energy_joules_total",
                  {{"energy_source", "estimated"}, {"model_name", "llama"}}),
      2.5);
}

TEST(ServingMetricsTest, FinishedRequestsFeedCountersAndHistograms) {
  MetricRegistry registry;
  FakeClock clock;
  ServingMetrics metrics(registry, clock, Options("llama", EnergySource::kNvml, 2));
  metrics.RecordFinishedRequest(Finished("a", 3.0, EnergySource::kNvml));
  metrics.RecordFinishedRequest(Finished("", 1.0, EnergySource::kNvml));   // -> "default"
  metrics.RecordFinishedRequest(Finished("c", 2.0, EnergySource::kNvml));  // -> "other"
  RequestRecord failed = Finished("a", std::nullopt, EnergySource::kNvml);
  failed.finish_reason = "error";
  failed.error_code = "resource_exhausted";
  metrics.RecordFinishedRequest(failed);

  const auto f = Scrape(registry);
  const auto value = [&](const std::string& name, std::map<std::string, std::string> labels) {
    return SampleValue(f, "tokenmill:" + name, "tokenmill:" + name, labels);
  };
  EXPECT_EQ(value("prompt_tokens_total", {{"tenant", "a"}}), 200);  // errors count tokens too
  EXPECT_EQ(value("prompt_tokens_total", {{"tenant", "default"}}), 100);
  EXPECT_EQ(value("prompt_tokens_total", {{"tenant", "other"}}), 100);
  EXPECT_FALSE(HasSample(f, "tokenmill:prompt_tokens_total", "tokenmill:prompt_tokens_total",
                         {{"tenant", "c"}}));
  EXPECT_EQ(value("generation_tokens_total", {{"tenant", "a"}}), 40);
  EXPECT_EQ(value("prompt_tokens_cached_total", {{"tenant", "a"}}), 64);
  EXPECT_EQ(value("request_success_total",
                  {{"tenant", "a"}, {"finished_reason", "stop"}, {"model_name", "llama"}}),
            1);
  EXPECT_EQ(value("request_errors_total", {{"tenant", "a"}, {"error_code", "resource_exhausted"}}),
            1);
  EXPECT_DOUBLE_EQ(value("energy_joules_total", {{"tenant", "a"}, {"energy_source", "nvml"}}), 3);
  EXPECT_DOUBLE_EQ(value("request_device_seconds_total", {{"tenant", "a"}}), 1.0);
  // Latency histograms: the three successes only.
  const std::string e2e = "tokenmill:e2e_request_latency_seconds";
  EXPECT_EQ(SampleValue(f, e2e, e2e + "_count", {}), 3);
  EXPECT_EQ(SampleValue(f, e2e, e2e + "_bucket", {{"le", "0.8"}}), 3);
  EXPECT_EQ(SampleValue(f, e2e, e2e + "_bucket", {{"le", "0.5"}}), 0);
  const std::string ttft = "tokenmill:time_to_first_token_seconds";
  EXPECT_EQ(SampleValue(f, ttft, ttft + "_bucket", {{"le", "0.25"}}), 3);
  EXPECT_EQ(SampleValue(f, ttft, ttft + "_bucket", {{"le", "0.1"}}), 0);
  const std::string prompt = "tokenmill:request_prompt_tokens";
  EXPECT_EQ(SampleValue(f, prompt, prompt + "_bucket", {{"le", "100"}}), 3);
  EXPECT_EQ(SampleValue(f, prompt, prompt + "_bucket", {{"le", "50"}}), 0);
}

TEST(ServingMetricsTest, EngineGaugesAndStepFigures) {
  MetricRegistry registry;
  FakeClock clock;
  FakeEnergyMeter meter;
  meter.SetDeviceStats(
      {{.index = 0, .name = "GPU", .utilization = 0.75, .power_watts = 310.5},
       {.index = 1, .name = "GPU", .utilization = std::nullopt, .power_watts = 90.0}});
  ServingMetrics metrics(registry, clock, Options("llama", EnergySource::kNvml), &meter);
  metrics.SetSchedulerState(3, 5);
  metrics.SetKvCacheUsage(25, 100);
  metrics.RecordPrefixCacheLookup(100, 40);
  metrics.RecordPrefixCacheLookup(100, 60);
  metrics.RecordPreemptions(2);
  metrics.RecordStep({.duration_ns = 30000000, .energy_uj = 9000000, .work = {{1, 100}, {2, 28}}},
                     256);
  metrics.ObserveInterTokenLatency(0.02);
  clock.Advance(12.5);

  const auto f = Scrape(registry);
  const auto value = [&](const std::string& name, std::map<std::string, std::string> labels) {
    return SampleValue(f, "tokenmill:" + name, "tokenmill:" + name, labels);
  };
  EXPECT_EQ(value("num_requests_running", {{"model_name", "llama"}}), 3);
  EXPECT_EQ(value("num_requests_waiting", {}), 5);
  EXPECT_DOUBLE_EQ(value("kv_cache_usage_perc", {}), 0.25);
  EXPECT_EQ(value("prefix_cache_queries_total", {}), 200);
  EXPECT_EQ(value("prefix_cache_hits_total", {}), 100);
  EXPECT_DOUBLE_EQ(value("prefix_cache_hit_rate", {}), 0.5);
  EXPECT_EQ(value("num_preemptions_total", {}), 2);
  EXPECT_DOUBLE_EQ(value("batch_occupancy_perc", {}), 0.5);
  EXPECT_DOUBLE_EQ(value("uptime_seconds", {}), 12.5);
  EXPECT_DOUBLE_EQ(value("step_energy_joules_total", {}), 9.0);
  EXPECT_DOUBLE_EQ(value("gpu_utilization_perc", {{"gpu", "0"}}), 0.75);
  EXPECT_DOUBLE_EQ(value("gpu_power_watts", {{"gpu", "1"}}), 90.0);
  EXPECT_FALSE(HasSample(f, "tokenmill:gpu_utilization_perc", "tokenmill:gpu_utilization_perc",
                         {{"gpu", "1"}}));
  const std::string it = "tokenmill:iteration_tokens_total";
  EXPECT_EQ(SampleValue(f, it, it + "_sum", {}), 128);
  const std::string itl = "tokenmill:inter_token_latency_seconds";
  EXPECT_EQ(SampleValue(f, itl, itl + "_bucket", {{"le", "0.025"}}), 1);
  const std::string step = "tokenmill:step_duration_seconds";
  EXPECT_DOUBLE_EQ(SampleValue(f, step, step + "_sum", {}), 0.03);
}

TEST(ServingMetricsTest, FailedStepsAreCountedAndTheirEnergyIsStepEnergy) {
  MetricRegistry registry;
  FakeClock clock;
  ServingMetrics metrics(registry, clock, Options("llama", EnergySource::kNvml));
  metrics.RecordStep({.duration_ns = 20000000, .energy_uj = 4000000, .work = {{1, 64}}}, 256);
  metrics.RecordFailedStep({.duration_ns = 50000000, .energy_uj = 2500000, .work = {{2, 32}}});
  metrics.RecordFailedStep({.duration_ns = 10000000, .energy_uj = std::nullopt, .work = {{3, 1}}});

  const auto f = Scrape(registry);
  const auto value = [&](const std::string& name, const std::string& sample) {
    return SampleValue(f, "tokenmill:" + name, "tokenmill:" + sample, {{"model_name", "llama"}});
  };
  EXPECT_EQ(f.at("tokenmill:engine_failed_steps_total").type, "counter");
  EXPECT_EQ(value("engine_failed_steps_total", "engine_failed_steps_total"), 2);
  // Energy is energy: the meter's delta over every step, failed or not, is step energy.
  EXPECT_DOUBLE_EQ(value("step_energy_joules_total", "step_energy_joules_total"), 6.5);
  // Duration, tokens and occupancy describe the completed step only.
  EXPECT_EQ(value("step_duration_seconds", "step_duration_seconds_count"), 1);
  EXPECT_DOUBLE_EQ(value("step_duration_seconds", "step_duration_seconds_sum"), 0.02);
  EXPECT_EQ(value("iteration_tokens_total", "iteration_tokens_total_sum"), 64);
  EXPECT_DOUBLE_EQ(value("batch_occupancy_perc", "batch_occupancy_perc"), 0.25);

  // Without a meter there is no step energy to add to, and the count still moves.
  MetricRegistry plain;
  ServingMetrics unmetered(plain, clock, Options("llama"));
  unmetered.RecordFailedStep({.duration_ns = 1000, .energy_uj = std::nullopt, .work = {}});
  const auto g = Scrape(plain);
  EXPECT_FALSE(g.count("tokenmill:step_energy_joules_total"));
  EXPECT_EQ(SampleValue(g, "tokenmill:engine_failed_steps_total",
                        "tokenmill:engine_failed_steps_total", {}),
            1);
}

TEST(ServingMetricsTest, TwoEnginesShareOneRegistry) {
  MetricRegistry registry;
  FakeClock clock;
  auto a = std::make_unique<ServingMetrics>(registry, clock, Options("a"));
  ServingMetrics b(registry, clock, Options("b"));
  a->SetSchedulerState(1, 0);
  b.SetSchedulerState(2, 0);
  auto f = Scrape(registry);
  EXPECT_EQ(SampleValue(f, "tokenmill:num_requests_running", "tokenmill:num_requests_running",
                        {{"model_name", "a"}}),
            1);
  EXPECT_EQ(SampleValue(f, "tokenmill:num_requests_running", "tokenmill:num_requests_running",
                        {{"model_name", "b"}}),
            2);
  a.reset();  // its collect hook goes with it
  clock.Advance(1);
  f = Scrape(registry);
  EXPECT_EQ(
      SampleValue(f, "tokenmill:uptime_seconds", "tokenmill:uptime_seconds", {{"model_name", "b"}}),
      1);
}

}  // namespace
}  // namespace tokenmill::metrics
