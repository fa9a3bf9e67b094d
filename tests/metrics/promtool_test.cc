// Feeds our /metrics text to Prometheus's own parser (`promtool check metrics`) when the
// prometheus package is installed; skips otherwise.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "tokenmill/metrics/serving_metrics.h"

namespace tokenmill::metrics {
namespace {

bool HavePromtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

TEST(PromtoolTest, PrometheusParsesOurExposition) {
  if (!HavePromtool()) GTEST_SKIP() << "promtool absent (apt-get install prometheus)";
  MetricRegistry registry;
  FakeClock clock;
  FakeEnergyMeter meter;
  meter.SetDeviceStats({DeviceStats{0, "GPU", 0.5, 100.0}});
  ServingMetricsOptions options;
  options.model_name = "llama";
  options.energy_source = EnergySource::kNvml;
  ServingMetrics metrics(registry, clock, options, &meter);
  RequestRecord r;
  r.tenant = "tenant with \"quotes\" and \\ backslash\nand newline";
  r.ttft_s = 0.2;
  r.e2e_s = 1.5;
  r.joules = 2.0;
  r.energy_source = EnergySource::kNvml;
  r.currency = "USD";
  r.finish_reason = "stop";
  metrics.RecordFinishedRequest(r);
  const std::string path = ::testing::TempDir() + "/tokenmill_exposition.txt";
  std::ofstream(path) << registry.RenderText();

  const std::string command = "promtool check metrics < " + path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  std::filesystem::remove(path);
  // Exit 0: clean; 3: lint findings only. Parse errors exit 1 and say "error".
  const int code = WEXITSTATUS(status);
  EXPECT_TRUE(code == 0 || code == 3) << output;
  EXPECT_EQ(output.find("error"), std::string::npos) << output;
  // The only lint findings are the two that the vLLM naming convention implies: the
  // "tokenmill:" prefix and vLLM's histogram name iteration_tokens_total.
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    const bool expected = line.find("should not contain ':'") != std::string::npos ||
                          line.find("iteration_tokens_total non-counter") != std::string::npos;
    EXPECT_TRUE(expected) << line;
  }
}

}  // namespace
}  // namespace tokenmill::metrics
