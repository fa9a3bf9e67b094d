// Keeps docs/metrics.md and the shipped Prometheus/Grafana configs in step with the metrics
// the code registers.
#include <regex>
#include <set>

#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"
#include "nlohmann/json.hpp"
#include "testing/testdata.h"
#include "tokenmill/metrics/serving_metrics.h"

namespace tokenmill::metrics {
namespace {

// Every family ServingMetrics can register (energy and GPU gauges included).
std::map<std::string, testing::ParsedFamily> AllFamilies() {
  MetricRegistry registry;
  FakeClock clock;
  FakeEnergyMeter meter;
  meter.SetDeviceStats({DeviceStats{0, "GPU", 0.5, 100.0}});
  ServingMetricsOptions options;
  options.model_name = "m";
  options.energy_source = EnergySource::kNvml;
  ServingMetrics metrics(registry, clock, options, &meter);
  auto parsed = testing::ParseExposition(registry.RenderText());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : std::map<std::string, testing::ParsedFamily>{};
}

std::string Read(const std::string& relative) {
  return ::tokenmill::testing::ReadFileOrDie(::tokenmill::testing::SourceDir() + "/" + relative);
}

TEST(MetricsDocsTest, EveryMetricIsDocumented) {
  const std::string doc = Read("docs/metrics.md");
  const auto families = AllFamilies();
  ASSERT_GT(families.size(), 25u);
  for (const auto& [name, family] : families) {
    EXPECT_NE(doc.find("`" + name + "`"), std::string::npos) << name << " missing from docs";
  }
}

TEST(MetricsDocsTest, DashboardUsesOnlyRealMetrics) {
  const std::string text = Read("configs/grafana/tokenmill.json");
  const nlohmann::json dashboard = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded()) << "dashboard is not JSON";
  ASSERT_TRUE(dashboard["panels"].is_array());
  const auto families = AllFamilies();
  const std::regex name_re("tokenmill:[a-zA-Z0-9_:]+");
  std::set<std::string> used;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name_re);
       it != std::sregex_iterator(); ++it) {
    used.insert(it->str());
  }
  ASSERT_GT(used.size(), 10u);
  for (std::string name : used) {
    if (!families.count(name)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s(suffix);
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
            families.count(name.substr(0, name.size() - s.size())) &&
            families.at(name.substr(0, name.size() - s.size())).type == "histogram") {
          name = name.substr(0, name.size() - s.size());
          break;
        }
      }
    }
    EXPECT_TRUE(families.count(name)) << "dashboard queries unknown metric " << name;
  }
  // The panels the issue asks for.
  for (const char* metric :
       {"tokenmill:generation_tokens_total", "tokenmill:time_to_first_token_seconds_bucket",
        "tokenmill:gpu_utilization_perc", "tokenmill:kv_cache_usage_perc",
        "tokenmill:energy_joules_total", "tokenmill:cost_total"}) {
    EXPECT_TRUE(used.count(metric)) << metric;
  }
}

TEST(MetricsDocsTest, PrometheusConfigScrapesLocalhost) {
  const std::string config = Read("configs/prometheus.yml");
  EXPECT_NE(config.find("localhost:8080"), std::string::npos);
  EXPECT_NE(config.find("metrics_path: /metrics"), std::string::npos);
}

}  // namespace
}  // namespace tokenmill::metrics
