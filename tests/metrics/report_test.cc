#include "tokenmill/metrics/report.h"

#include <filesystem>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tokenmill/metrics/ledger.h"

namespace tokenmill::metrics {
namespace {

namespace fs = std::filesystem;

constexpr double kDay1 = 1700006400.0;  // 2023-11-15T00:00:00Z

TEST(PercentileTest, InterpolatesBetweenOrderStatistics) {
  EXPECT_EQ(Percentile({}, 0.5), std::nullopt);
  EXPECT_EQ(Percentile({7}, 0.99), 7);
  EXPECT_EQ(Percentile({5, 1, 4, 2, 3}, 0.5), 3);  // unsorted input
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4, 5}, 0.99).value(), 4.96);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 0.5).value(), 2.5);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 0.0), 1);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 1.0), 4);
  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  EXPECT_DOUBLE_EQ(Percentile(hundred, 0.99).value(), 99.01);
  EXPECT_DOUBLE_EQ(Percentile(hundred, 0.50).value(), 50.5);
}

RequestRecord Rec(const std::string& tenant, const std::string& model, double time, int64_t prompt,
                  int64_t generated, double ttft, double e2e, std::optional<double> joules,
                  double cost) {
  RequestRecord r;
  r.request_id = tenant + std::to_string(time);
  r.tenant = tenant;
  r.model = model;
  r.time_unix_s = time;
  r.prompt_tokens = prompt;
  r.generated_tokens = generated;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.joules = joules;
  r.energy_source = joules ? EnergySource::kNvml : EnergySource::kNone;
  r.cost = cost;
  r.currency = "USD";
  r.finish_reason = "stop";
  return r;
}

std::vector<RequestRecord> Records() {
  std::vector<RequestRecord> v;
  v.push_back(Rec("acme", "llama", kDay1 + 10, 100, 50, 0.1, 2.0, 30.0, 0.002));
  v.push_back(Rec("acme", "llama", kDay1 + 12, 300, 150, 0.3, 4.0, 70.0, 0.006));
  v.push_back(Rec("beta", "qwen", kDay1 + 86400 + 5, 1000, 0, 0.5, 1.0, std::nullopt, 0.01));
  v.back().finish_reason = "error";
  v.back().error_code = "internal";
  v.back().ttft_s.reset();
  return v;
}

TEST(BuildReportTest, AggregatesByTenant) {
  auto report = BuildReport(Records(), ReportGroupBy::kTenant);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->rows.size(), 2u);
  const ReportRow& acme = report->rows[0];
  EXPECT_EQ(acme.key, "acme");
  EXPECT_EQ(acme.requests, 2);
  EXPECT_EQ(acme.prompt_tokens, 400);
  EXPECT_EQ(acme.generated_tokens, 200);
  EXPECT_DOUBLE_EQ(acme.window_s, 4.0);  // first arrival kDay1+8, last finish kDay1+12
  EXPECT_DOUBLE_EQ(acme.output_tokens_per_s.value(), 50.0);
  EXPECT_DOUBLE_EQ(acme.tokens_per_s.value(), 150.0);
  EXPECT_DOUBLE_EQ(acme.ttft_p50_s.value(), 0.2);
  EXPECT_DOUBLE_EQ(acme.ttft_p99_s.value(), 0.298);
  EXPECT_DOUBLE_EQ(acme.e2e_p50_s.value(), 3.0);
  EXPECT_DOUBLE_EQ(acme.joules.value(), 100.0);
  EXPECT_DOUBLE_EQ(acme.tokens_per_joule.value(), 6.0);
  EXPECT_DOUBLE_EQ(acme.cost, 0.008);
  EXPECT_DOUBLE_EQ(acme.cost_per_1m_tokens.value(), 0.008 / 600 * 1e6);
  EXPECT_EQ(acme.energy_source, "nvml");
  EXPECT_EQ(acme.error_rate, 0.0);

  const ReportRow& beta = report->rows[1];
  EXPECT_EQ(beta.joules, std::nullopt);  // unknown, not 0
  EXPECT_EQ(beta.tokens_per_joule, std::nullopt);
  EXPECT_EQ(beta.ttft_p50_s, std::nullopt);
  EXPECT_EQ(beta.error_rate, 1.0);
  EXPECT_EQ(beta.energy_source, "none");

  const ReportRow& total = report->total;
  EXPECT_EQ(total.requests, 3);
  EXPECT_EQ(total.errors, 1);
  EXPECT_DOUBLE_EQ(total.joules.value(), 100.0);  // of the 2 requests that were measured
  EXPECT_EQ(total.requests_with_energy, 2);
  EXPECT_DOUBLE_EQ(total.tokens_per_joule.value(), 6.0);
  EXPECT_EQ(total.energy_source, "none+nvml");
  EXPECT_DOUBLE_EQ(total.cost, 0.018);
}

TEST(BuildReportTest, GroupsByModelAndDay) {
  auto by_model = BuildReport(Records(), ReportGroupBy::kModel);
  ASSERT_TRUE(by_model.ok());
  ASSERT_EQ(by_model->rows.size(), 2u);
  EXPECT_EQ(by_model->rows[0].key, "llama");
  EXPECT_EQ(by_model->rows[1].key, "qwen");
  auto by_day = BuildReport(Records(), ReportGroupBy::kDay);
  ASSERT_TRUE(by_day.ok());
  ASSERT_EQ(by_day->rows.size(), 2u);
  EXPECT_EQ(by_day->rows[0].key, "2023-11-15");
  EXPECT_EQ(by_day->rows[1].key, "2023-11-16");
}

TEST(BuildReportTest, MixedCurrenciesAreAnError) {
  std::vector<RequestRecord> v = Records();
  v[1].currency = "EUR";
  auto report = BuildReport(v, ReportGroupBy::kTenant);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(report.status().message().find("EUR"), std::string::npos);
}

class RunReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("report-test-" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::remove_all(dir_);
    FakeClock clock;
    auto writer = LedgerWriter::Open(dir_.string(), clock);
    ASSERT_TRUE(writer.ok());
    for (const RequestRecord& r : Records()) ASSERT_TRUE((*writer)->Append(r).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  ReportOptions Options(ReportFormat format) const {
    ReportOptions o;
    o.ledger_path = dir_.string();
    o.format = format;
    return o;
  }

  fs::path dir_;
};

TEST_F(RunReportTest, JsonHasTheDocumentedRows) {
  auto text = RunReport(Options(ReportFormat::kJson));
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["by"], "tenant");
  EXPECT_EQ(j["currency"], "USD");
  ASSERT_EQ(j["rows"].size(), 2u);
  for (const auto& row : j["rows"]) {
    for (const char* key :
         {"key", "requests", "prompt_tokens", "generated_tokens", "cost", "cost_per_1m_tokens",
          "joules", "tokens_per_joule", "output_tokens_per_s", "ttft_p50_s", "ttft_p99_s",
          "e2e_p50_s", "e2e_p99_s", "error_rate"}) {
      EXPECT_TRUE(row.contains(key)) << key;
    }
  }
  EXPECT_EQ(j["rows"][0]["key"], "acme");
  EXPECT_EQ(j["rows"][0]["requests"], 2);
  EXPECT_EQ(j["rows"][0]["joules"], 100.0);
  EXPECT_TRUE(j["rows"][1]["joules"].is_null());
  EXPECT_EQ(j["total"]["requests"], 3);
  EXPECT_EQ(j["files"].size(), 2u);
}

TEST_F(RunReportTest, SinceFiltersRecords) {
  ReportOptions o = Options(ReportFormat::kJson);
  o.since_unix_s = kDay1 + 86400;
  o.by = ReportGroupBy::kDay;
  auto text = RunReport(o);
  ASSERT_TRUE(text.ok());
  const nlohmann::json j = nlohmann::json::parse(*text);
  ASSERT_EQ(j["rows"].size(), 1u);
  EXPECT_EQ(j["rows"][0]["key"], "2023-11-16");
  EXPECT_EQ(j["since"], "2023-11-16T00:00:00.000000Z");
}

TEST_F(RunReportTest, TableIsAligned) {
  auto text = RunReport(Options(ReportFormat::kTable));
  ASSERT_TRUE(text.ok());
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 6u);  // header, rule, 2 rows, rule, total (+ notes)
  EXPECT_EQ(lines[0].rfind("tenant", 0), 0u);
  EXPECT_NE(lines[0].find("cost (USD)"), std::string::npos);
  EXPECT_EQ(lines[2].rfind("acme", 0), 0u);
  EXPECT_EQ(lines[5].rfind("total", 0), 0u);
  // Right-aligned numeric columns end at the same place: the requests column.
  const size_t end = lines[0].find("requests") + std::string("requests").size();
  for (int i : {2, 3, 5}) EXPECT_NE(lines[i][end - 1], ' ') << lines[i];
  for (int i : {2, 3, 5}) EXPECT_EQ(lines[i][end], ' ') << lines[i];
  EXPECT_NE(lines[3].find(" - "), std::string::npos);  // beta's unknown figures
  EXPECT_NE(text->find("energy measured for 2 of 3 requests"), std::string::npos);
}

TEST_F(RunReportTest, MarkdownIsATable) {
  auto text = RunReport(Options(ReportFormat::kMarkdown));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->rfind("## tokenmill report by tenant", 0), 0u);
  EXPECT_NE(text->find("| tenant | requests |"), std::string::npos);
  EXPECT_NE(text->find("|---|---:|"), std::string::npos);
  EXPECT_NE(text->find("| acme | 2 |"), std::string::npos);
  EXPECT_NE(text->find("| **total** | 3 |"), std::string::npos);
}

TEST_F(RunReportTest, MissingLedgerIsAnError) {
  ReportOptions o = Options(ReportFormat::kTable);
  o.ledger_path = (dir_ / "nope").string();
  EXPECT_EQ(RunReport(o).status().code(), absl::StatusCode::kNotFound);
}

TEST(ReportOptionsTest, ParsesFlags) {
  EXPECT_EQ(ParseReportGroupBy("model").value(), ReportGroupBy::kModel);
  EXPECT_FALSE(ParseReportGroupBy("region").ok());
  EXPECT_EQ(ParseReportFormat("markdown").value(), ReportFormat::kMarkdown);
  EXPECT_EQ(ParseReportFormat("json").value(), ReportFormat::kJson);
  EXPECT_NE(ParseReportFormat("xml").status().message().find("--format"), std::string::npos);
  const double now = kDay1 + 3600;
  EXPECT_DOUBLE_EQ(ParseSince("2023-11-15", now).value(), kDay1);
  EXPECT_DOUBLE_EQ(ParseSince("2023-11-15T00:30:00Z", now).value(), kDay1 + 1800);
  EXPECT_DOUBLE_EQ(ParseSince("24h", now).value(), now - 86400);
  EXPECT_DOUBLE_EQ(ParseSince("7d", now).value(), now - 7 * 86400);
  EXPECT_DOUBLE_EQ(ParseSince("90s", now).value(), now - 90);
  EXPECT_FALSE(ParseSince("last tuesday", now).ok());
  EXPECT_FALSE(ParseSince("-5h", now).ok());
}

}  // namespace
}  // namespace tokenmill::metrics
