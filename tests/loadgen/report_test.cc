// report.json schema (the keys outside checks rely on), report.md, plots and their absence.
#include "tokenmill/loadgen/report.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace tokenmill::loadgen {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

RequestSample Done(double send, double ttft, int n, std::optional<double> joules) {
  RequestSample s;
  s.prompt_tokens = 10;
  s.max_tokens = n;
  s.scheduled_s = send;
  s.result.send_s = send;
  s.result.first_token_s = send + ttft;
  for (int i = 0; i < n; ++i) s.result.chunk_times_s.push_back(send + ttft + 0.01 * i);
  s.result.end_s = s.result.chunk_times_s.back();
  s.result.output_tokens = n;
  s.result.joules = joules;
  if (joules.has_value()) s.result.energy_source = "estimated";
  return s;
}

BenchReport MakeReport(bool with_energy) {
  BenchReport r;
  r.seed = 7;
  r.commit = "abc123";
  r.date = "2026-01-01T00:00:00Z";
  r.machine = DetectMachine();
  r.config = {{"target", "inproc"}, {"model", "demo"}, {"workload", "fixed:10:4"}};
  const std::optional<double> j = with_energy ? std::optional<double>(1.0) : std::nullopt;
  for (int c : {1, 2, 4}) {
    std::vector<RequestSample> samples;
    for (int i = 0; i < 8; ++i) samples.push_back(Done(i * 0.1 / c, 0.05 * c, 4, j));
    if (c == 4) {
      RequestSample bad;
      bad.result.send_s = 0;
      bad.result.end_s = 0.2;
      bad.result.error_code = "resource_exhausted";
      samples.push_back(bad);
    }
    PointReport p;
    p.load = {LoadMode::kConcurrency, static_cast<double>(c)};
    p.metrics = ComputePointMetrics(samples, Slo{.ttft_s = 0.15, .tpot_s = std::nullopt});
    p.num_sessions = 8;
    r.points.push_back(p);
  }
  return r;
}

void ExpectSummaryObject(const json& j, const std::string& key) {
  ASSERT_TRUE(j.contains(key)) << key;
  ASSERT_TRUE(j[key].is_object()) << key;
  EXPECT_EQ(j[key].size(), 4u) << key;
  for (const char* q : {"p50", "p90", "p99", "mean"}) {
    ASSERT_TRUE(j[key].contains(q)) << key << "." << q;
    EXPECT_TRUE(j[key][q].is_number() || j[key][q].is_null()) << key << "." << q;
  }
}

TEST(ReportJsonTest, TopLevelKeysOfTheContract) {
  const json j = json::parse(ReportJson(MakeReport(false)).dump());
  for (const char* k : {"output_throughput_tok_s", "request_throughput_req_s"}) {
    ASSERT_TRUE(j.contains(k)) << k;
    EXPECT_TRUE(j[k].is_number()) << k;
  }
  for (const char* k : {"ttft_s", "tpot_s", "itl_s", "e2e_s"}) ExpectSummaryObject(j, k);
  ASSERT_TRUE(j.contains("tokens_per_joule"));
  EXPECT_TRUE(j["tokens_per_joule"].is_null());  // unknown energy is null, never 0
  ASSERT_TRUE(j.contains("cost_per_1m_tokens"));
  EXPECT_TRUE(j["cost_per_1m_tokens"].is_null());
  EXPECT_EQ(j["seed"], 7);
  EXPECT_EQ(j["commit"], "abc123");
  EXPECT_EQ(j["schema_version"], kReportSchemaVersion);
  EXPECT_TRUE(j["machine"]["num_cpus"].get<int>() > 0);
  EXPECT_EQ(j["config"]["workload"], "fixed:10:4");
  ASSERT_EQ(j["points"].size(), 3u);
  for (const json& p : j["points"]) {
    for (const char* k : {"ttft_s", "tpot_s", "itl_s", "e2e_s"}) ExpectSummaryObject(p, k);
    EXPECT_TRUE(p["load"]["value"].is_number());
    EXPECT_EQ(p["load"]["mode"], "concurrency");
  }
  EXPECT_TRUE(j["errors"]["by_code"].is_object());
}

TEST(ReportJsonTest, TopLevelRepeatsTheHighestThroughputPoint) {
  const BenchReport r = MakeReport(true);
  const int best = SummaryPointIndex(r);
  ASSERT_EQ(best, 2);  // concurrency 4 sends the same requests 4x faster
  const json j = json::parse(ReportJson(r).dump());
  EXPECT_EQ(j["summary_point"], best);
  EXPECT_EQ(j["output_throughput_tok_s"], j["points"][best]["output_throughput_tok_s"]);
  EXPECT_EQ(j["ttft_s"], j["points"][best]["ttft_s"]);
  EXPECT_EQ(j["errors"]["total"], 1);
  EXPECT_EQ(j["errors"]["by_code"]["resource_exhausted"], 1);
  EXPECT_DOUBLE_EQ(j["tokens_per_joule"].get<double>(), 14.0);  // (10 + 4) tokens / 1 J
  EXPECT_EQ(j["energy_source"], "estimated");
  EXPECT_TRUE(j["goodput_req_s"].is_number());
  EXPECT_EQ(j["points"][0]["num_good"], 8);  // TTFT 0.05 s <= 0.15 s
  EXPECT_EQ(j["points"][2]["num_good"], 0);  // TTFT 0.2 s
}

TEST(ReportJsonTest, NoPointStillHasTheContractKeys) {
  BenchReport r;
  const json j = json::parse(ReportJson(r).dump());
  EXPECT_TRUE(j["output_throughput_tok_s"].is_null());
  for (const char* k : {"ttft_s", "tpot_s", "itl_s", "e2e_s"}) ExpectSummaryObject(j, k);
  EXPECT_TRUE(j["cost_per_1m_tokens"].is_null());
}

TEST(ReportMarkdownTest, OneRowPerPointAndTheSummary) {
  const std::string md = ReportMarkdown(MakeReport(false), {"throughput_latency.png"});
  EXPECT_NE(md.find("| c=1 |"), std::string::npos);
  EXPECT_NE(md.find("| c=2 |"), std::string::npos);
  EXPECT_NE(md.find("| c=4 |"), std::string::npos);
  EXPECT_NE(md.find("1 (resource_exhausted 1)"), std::string::npos);
  EXPECT_NE(md.find("## Summary point: concurrency 4"), std::string::npos);
  EXPECT_NE(md.find("energy: unknown"), std::string::npos);
  EXPECT_NE(md.find("![throughput_latency.png](throughput_latency.png)"), std::string::npos);
}

std::string Read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(WriteReportTest, WritesTheFilesAndPlotsWithGnuplot) {
  const fs::path dir = fs::path(::testing::TempDir()) / "bench_report_plots";
  fs::remove_all(dir);
  auto w = WriteReport(MakeReport(true), dir.string());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(json::accept(Read(dir / "report.json")));
  EXPECT_NE(Read(dir / "report.md").find("# tokenmill bench"), std::string::npos);
  EXPECT_NE(Read(dir / "sweep.dat").find("# load"), std::string::npos);
  if (!w->warnings.empty()) {
    // Only a missing gnuplot may skip the plots.
    EXPECT_NE(w->warnings[0].find("not found"), std::string::npos) << w->warnings[0];
    GTEST_SKIP() << w->warnings[0];
  }
  for (const char* png : {"throughput_latency.png", "tokens_per_joule.png"}) {
    ASSERT_TRUE(fs::exists(dir / png)) << png;
    const std::string bytes = Read(dir / png);
    EXPECT_EQ(bytes.substr(1, 3), "PNG") << png;
    EXPECT_GT(bytes.size(), 5000u) << png;
  }
  EXPECT_NE(Read(dir / "report.md").find("tokens_per_joule.png"), std::string::npos);
}

TEST(WriteReportTest, MissingGnuplotIsAWarningNotAFailure) {
  const fs::path dir = fs::path(::testing::TempDir()) / "bench_report_noplot";
  fs::remove_all(dir);
  auto w = WriteReport(MakeReport(false), dir.string(), "/nonexistent/gnuplot");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->warnings.size(), 1u);
  EXPECT_NE(w->warnings[0].find("plots skipped"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "report.json"));
  EXPECT_TRUE(fs::exists(dir / "report.md"));
  EXPECT_FALSE(fs::exists(dir / "throughput_latency.png"));
}

TEST(WriteReportTest, UnwritableDirectoryIsAnError) {
  auto w = WriteReport(MakeReport(false), "/proc/self/no_such_dir/x");
  EXPECT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("/proc/self/no_such_dir/x"), std::string::npos);
}

}  // namespace
}  // namespace tokenmill::loadgen
