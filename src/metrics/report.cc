#include "tokenmill/metrics/report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "tokenmill/core/status.h"
#include "tokenmill/metrics/ledger.h"

namespace tokenmill::metrics {

absl::StatusOr<ReportGroupBy> ParseReportGroupBy(absl::string_view text) {
  if (text == "tenant") return ReportGroupBy::kTenant;
  if (text == "model") return ReportGroupBy::kModel;
  if (text == "day") return ReportGroupBy::kDay;
  return absl::InvalidArgumentError(
      absl::StrCat("--by: unknown value '", text, "' (tenant|model|day)"));
}

absl::StatusOr<ReportFormat> ParseReportFormat(absl::string_view text) {
  if (text == "table") return ReportFormat::kTable;
  if (text == "markdown" || text == "md") return ReportFormat::kMarkdown;
  if (text == "json") return ReportFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: unknown value '", text, "' (table|markdown|json)"));
}

const char* ReportGroupByName(ReportGroupBy by) {
  switch (by) {
    case ReportGroupBy::kTenant:
      return "tenant";
    case ReportGroupBy::kModel:
      return "model";
    case ReportGroupBy::kDay:
      return "day";
  }
  return "tenant";
}

absl::StatusOr<double> ParseSince(absl::string_view text, double now_unix_s) {
  const std::string s(absl::StripAsciiWhitespace(text));
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%Y-%m-%d", s, absl::UTCTimeZone(), &t, &err) ||
      absl::ParseTime(absl::RFC3339_full, s, &t, &err)) {
    return absl::ToUnixMicros(t) * 1e-6;
  }
  // Durations: absl parses s/m/h; days are common enough in reports to accept too.
  if (s.size() >= 2 && s.back() == 'd') {
    double days = 0;
    if (absl::SimpleAtod(s.substr(0, s.size() - 1), &days) && days >= 0) {
      return now_unix_s - days * 86400.0;
    }
  }
  absl::Duration d;
  if (absl::ParseDuration(s, &d) && d >= absl::ZeroDuration()) {
    return now_unix_s - absl::ToDoubleSeconds(d);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--since: '", text,
                   "' is not a date (2024-05-01), an RFC 3339 time or a duration "
                   "(90s, 30m, 24h, 7d)"));
}

std::optional<double> Percentile(std::vector<double> values, double q) {
  if (values.empty()) return std::nullopt;
  TM_CHECK(q >= 0 && q <= 1, "percentile q must be in [0, 1], got ", q);
  std::sort(values.begin(), values.end());
  const double h = (values.size() - 1) * q;
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (h - lo) * (values[hi] - values[lo]);
}

namespace {

std::string KeyOf(const RequestRecord& r, ReportGroupBy by) {
  switch (by) {
    case ReportGroupBy::kTenant:
      return r.tenant.empty() ? "default" : r.tenant;
    case ReportGroupBy::kModel:
      return r.model;
    case ReportGroupBy::kDay:
      return absl::FormatTime("%Y-%m-%d", absl::FromUnixMicros(std::llround(r.time_unix_s * 1e6)),
                              absl::UTCTimeZone());
  }
  return "";
}

std::optional<double> Ratio(double num, double den) {
  if (!(den > 0)) return std::nullopt;
  return num / den;
}

ReportRow Aggregate(std::string key, const std::vector<const RequestRecord*>& records) {
  ReportRow row;
  row.key = std::move(key);
  std::vector<double> ttft, e2e;
  double first_arrival = INFINITY, last_finish = -INFINITY, joules = 0;
  int64_t tokens_with_energy = 0;
  std::set<std::string> sources;
  for (const RequestRecord* r : records) {
    ++row.requests;
    row.errors += r->is_error() ? 1 : 0;
    row.prompt_tokens += r->prompt_tokens;
    row.cached_tokens += r->cached_tokens;
    row.generated_tokens += r->generated_tokens;
    row.device_s += r->device_s;
    row.cost += r->cost;
    if (r->ttft_s) ttft.push_back(*r->ttft_s);
    e2e.push_back(r->e2e_s);
    first_arrival = std::min(first_arrival, r->time_unix_s - r->e2e_s);
    last_finish = std::max(last_finish, r->time_unix_s);
    sources.insert(EnergySourceName(r->energy_source));
    if (r->joules) {
      ++row.requests_with_energy;
      joules += *r->joules;
      tokens_with_energy += r->total_tokens();
    }
  }
  if (row.requests > 0) row.window_s = std::max(0.0, last_finish - first_arrival);
  row.output_tokens_per_s = Ratio(row.generated_tokens, row.window_s);
  row.tokens_per_s = Ratio(row.tokens(), row.window_s);
  row.ttft_p50_s = Percentile(ttft, 0.50);
  row.ttft_p99_s = Percentile(ttft, 0.99);
  row.e2e_p50_s = Percentile(e2e, 0.50);
  row.e2e_p99_s = Percentile(e2e, 0.99);
  row.error_rate = row.requests > 0 ? static_cast<double>(row.errors) / row.requests : 0.0;
  if (row.requests_with_energy > 0) {
    row.joules = joules;
    row.tokens_per_joule = Ratio(tokens_with_energy, joules);
  }
  row.energy_source = sources.empty() ? "none" : absl::StrJoin(sources, "+");
  row.cost_per_1m_tokens = CostPerMillionTokens(row.cost, row.tokens());
  return row;
}

}  // namespace

absl::StatusOr<Report> BuildReport(const std::vector<RequestRecord>& records, ReportGroupBy by) {
  Report report;
  report.by = by;
  std::map<std::string, std::vector<const RequestRecord*>> groups;
  std::vector<const RequestRecord*> all;
  for (const RequestRecord& r : records) {
    if (report.currency.empty()) report.currency = r.currency;
    if (r.currency != report.currency) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ledger mixes currencies ", report.currency, " and ", r.currency, " (request ",
          r.request_id, "); use --since to report one price period at a time"));
    }
    groups[KeyOf(r, by)].push_back(&r);
    all.push_back(&r);
  }
  for (const auto& [key, members] : groups) report.rows.push_back(Aggregate(key, members));
  report.total = Aggregate("total", all);
  return report;
}

absl::StatusOr<std::string> RunReport(const ReportOptions& options) {
  TM_ASSIGN_OR_RETURN(LedgerContents contents,
                      ReadLedger(options.ledger_path, options.since_unix_s));
  TM_ASSIGN_OR_RETURN(Report report, BuildReport(contents.records, options.by));
  report.since_unix_s = options.since_unix_s;
  report.files = std::move(contents.files);
  report.num_partial_lines = contents.num_partial_lines;
  report.num_malformed_lines = contents.num_malformed_lines;
  switch (options.format) {
    case ReportFormat::kTable:
      return RenderReportTable(report);
    case ReportFormat::kMarkdown:
      return RenderReportMarkdown(report);
    case ReportFormat::kJson:
      return RenderReportJson(report);
  }
  return absl::InvalidArgumentError("unknown report format");
}

}  // namespace tokenmill::metrics
