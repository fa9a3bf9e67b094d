// The AI-factory scorecard from the ledger: `tokenmill report --ledger PATH [--by ...]
// [--since ...] [--format table|markdown|json]` is RunReport().
//
// Definitions (docs/metrics.md): tokens = prompt + generated; output_tokens_per_s = generated
// tokens / the group's window (first arrival to last finish); p50/p99 interpolate linearly
// between order statistics; error_rate = requests with an error_code / requests; joules sum
// the requests whose energy is known (null when none is), tokens_per_joule uses only those
// requests; cost_per_1m_tokens = cost / tokens x 1e6.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenmill/metrics/request_record.h"

namespace tokenmill::metrics {

enum class ReportGroupBy { kTenant, kModel, kDay };
enum class ReportFormat { kTable, kMarkdown, kJson };

absl::StatusOr<ReportGroupBy> ParseReportGroupBy(absl::string_view text);  // tenant|model|day
absl::StatusOr<ReportFormat> ParseReportFormat(absl::string_view text);    // table|markdown|json
const char* ReportGroupByName(ReportGroupBy by);

// `--since`: "2024-05-01" (UTC midnight), RFC 3339 "2024-05-01T12:00:00Z", or a duration
// before `now_unix_s`: "90s", "30m", "24h", "7d".
absl::StatusOr<double> ParseSince(absl::string_view text, double now_unix_s);

struct ReportOptions {
  std::string ledger_path;  // a ledger file or a ledger directory
  ReportGroupBy by = ReportGroupBy::kTenant;
  std::optional<double> since_unix_s;
  ReportFormat format = ReportFormat::kTable;
};

struct ReportRow {
  std::string key;  // tenant, model or UTC day; "total" for the total row
  int64_t requests = 0;
  int64_t errors = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t generated_tokens = 0;
  double window_s = 0.0;
  std::optional<double> output_tokens_per_s;
  std::optional<double> tokens_per_s;
  std::optional<double> ttft_p50_s, ttft_p99_s, e2e_p50_s, e2e_p99_s;
  double error_rate = 0.0;
  double device_s = 0.0;
  std::optional<double> joules;
  int64_t requests_with_energy = 0;
  std::optional<double> tokens_per_joule;
  std::string energy_source;  // "nvml", "rapl", "estimated", "none" or a '+' join when mixed
  double cost = 0.0;
  std::optional<double> cost_per_1m_tokens;

  int64_t tokens() const { return prompt_tokens + generated_tokens; }
};

struct Report {
  ReportGroupBy by = ReportGroupBy::kTenant;
  std::optional<double> since_unix_s;
  std::string currency;         // "" when there are no records
  std::vector<ReportRow> rows;  // sorted by key
  ReportRow total;
  std::vector<std::string> files;
  int num_partial_lines = 0;
  int num_malformed_lines = 0;
};

// Aggregates records. Error: the records mix currencies (costs cannot be summed).
absl::StatusOr<Report> BuildReport(const std::vector<RequestRecord>& records, ReportGroupBy by);

std::string RenderReportTable(const Report& report);     // aligned text for a terminal
std::string RenderReportMarkdown(const Report& report);  // a markdown table plus notes
// {"by":..,"since":..,"currency":..,"rows":[{"key":..,"requests":..,...}],"total":{..},
//  "files":[..],"partial_lines":..,"malformed_lines":..}; unknown figures are null.
std::string RenderReportJson(const Report& report);

// Reads the ledger, aggregates and renders in the requested format.
absl::StatusOr<std::string> RunReport(const ReportOptions& options);

// Linear interpolation between order statistics (numpy's default): q in [0, 1].
// nullopt for no values.
std::optional<double> Percentile(std::vector<double> values, double q);

}  // namespace tokenmill::metrics
