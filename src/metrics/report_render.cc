// Renderers of the ledger report. All three show the same figures; "-" (text) and null (JSON)
// stand for unknown, never 0.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "tokenmill/metrics/report.h"
#include "tokenmill/metrics/request_record.h"

namespace tokenmill::metrics {
namespace {

std::string Fmt(const std::optional<double>& v, int decimals, const char* suffix = "") {
  if (!v.has_value()) return "-";
  return absl::StrFormat("%.*f%s", decimals, *v, suffix);
}

struct Column {
  std::string title;
  bool left_aligned;
};

std::vector<Column> Columns(const Report& r) {
  const std::string cur = r.currency.empty() ? "" : absl::StrCat(" (", r.currency, ")");
  return {{ReportGroupByName(r.by), true},
          {"requests", false},
          {"err%", false},
          {"prompt_tok", false},
          {"gen_tok", false},
          {"out_tok/s", false},
          {"ttft_p50", false},
          {"ttft_p99", false},
          {"e2e_p50", false},
          {"e2e_p99", false},
          {"joules", false},
          {"tok/J", false},
          {"energy", true},
          {"cost" + cur, false},
          {"cost/1M_tok", false}};
}

std::vector<std::string> Cells(const ReportRow& row) {
  return {row.key,
          absl::StrCat(row.requests),
          absl::StrFormat("%.1f", row.error_rate * 100.0),
          absl::StrCat(row.prompt_tokens),
          absl::StrCat(row.generated_tokens),
          Fmt(row.output_tokens_per_s, 1),
          Fmt(row.ttft_p50_s, 3, "s"),
          Fmt(row.ttft_p99_s, 3, "s"),
          Fmt(row.e2e_p50_s, 3, "s"),
          Fmt(row.e2e_p99_s, 3, "s"),
          row.joules ? absl::StrFormat("%.1f%s", *row.joules,
                                       row.requests_with_energy < row.requests ? "*" : "")
                     : "-",
          Fmt(row.tokens_per_joule, 2),
          row.energy_source,
          absl::StrFormat("%.4f", row.cost),
          Fmt(row.cost_per_1m_tokens, 4)};
}

std::vector<std::string> Notes(const Report& r) {
  std::vector<std::string> notes;
  bool partial = r.total.joules && r.total.requests_with_energy < r.total.requests;
  if (partial) {
    notes.push_back(absl::StrFormat(
        "* energy measured for %d of %d requests; joules sum those, tok/J uses only them",
        r.total.requests_with_energy, r.total.requests));
  }
  if (r.total.energy_source.find("estimated") != std::string::npos) {
    notes.push_back(
        "energy marked 'estimated' comes from the operator's static power model, "
        "not a meter");
  }
  if (r.num_partial_lines > 0) {
    notes.push_back(absl::StrCat(r.num_partial_lines,
                                 " partly written line(s) skipped (ledger being written)"));
  }
  if (r.num_malformed_lines > 0) {
    notes.push_back(absl::StrCat(r.num_malformed_lines, " malformed line(s) skipped"));
  }
  if (r.total.requests == 0) notes.push_back("no requests in the ledger for this period");
  return notes;
}

}  // namespace

std::string RenderReportTable(const Report& report) {
  const std::vector<Column> cols = Columns(report);
  std::vector<std::vector<std::string>> lines;
  lines.emplace_back();
  for (const Column& c : cols) lines.back().push_back(c.title);
  for (const ReportRow& row : report.rows) lines.push_back(Cells(row));
  lines.push_back(Cells(report.total));
  std::vector<size_t> width(cols.size(), 0);
  for (const auto& line : lines) {
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  }
  auto render_line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      const std::string pad(width[i] - cells[i].size(), ' ');
      out += cols[i].left_aligned ? cells[i] + pad : pad + cells[i];
      out += i + 1 < cells.size() ? "  " : "";
    }
    // Left-aligned last cells would leave trailing blanks.
    out.erase(out.find_last_not_of(' ') + 1);
    return out + "\n";
  };
  size_t total_width = 0;
  for (size_t w : width) total_width += w + 2;
  const std::string rule(total_width - 2, '-');
  std::string out = render_line(lines[0]) + rule + "\n";
  for (size_t i = 1; i + 1 < lines.size(); ++i) out += render_line(lines[i]);
  out += rule + "\n" + render_line(lines.back());
  for (const std::string& note : Notes(report)) out += note + "\n";
  return out;
}

namespace {

// Markdown cells: '|' would split the cell and '*' (the partial-energy mark) would italicise.
std::string MarkdownEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|' || c == '*' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string MarkdownRow(const std::vector<std::string>& cells) {
  std::vector<std::string> escaped;
  for (const std::string& c : cells) escaped.push_back(MarkdownEscape(c));
  return absl::StrCat("| ", absl::StrJoin(escaped, " | "), " |\n");
}

}  // namespace

std::string RenderReportMarkdown(const Report& report) {
  const std::vector<Column> cols = Columns(report);
  std::string out = absl::StrCat("## tokenmill report by ", ReportGroupByName(report.by), "\n\n");
  if (report.since_unix_s) {
    absl::StrAppend(&out, "Since ", FormatRfc3339(*report.since_unix_s), ".\n\n");
  }
  std::vector<std::string> titles, align;
  for (const Column& c : cols) {
    titles.push_back(c.title);
    align.push_back(c.left_aligned ? "---" : "---:");
  }
  absl::StrAppend(&out, MarkdownRow(titles), "|", absl::StrJoin(align, "|"), "|\n");
  for (const ReportRow& row : report.rows) out += MarkdownRow(Cells(row));
  std::string total = MarkdownRow(Cells(report.total));
  total.replace(2, 5, "**total**");  // bold, so not escaped
  out += total;
  const std::vector<std::string> notes = Notes(report);
  if (!notes.empty()) out += "\n";
  for (const std::string& note : notes) absl::StrAppend(&out, "- ", MarkdownEscape(note), "\n");
  return out;
}

namespace {

nlohmann::ordered_json OrNull(const std::optional<double>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json RowJson(const ReportRow& row) {
  nlohmann::ordered_json j;
  j["key"] = row.key;
  j["requests"] = row.requests;
  j["errors"] = row.errors;
  j["error_rate"] = row.error_rate;
  j["prompt_tokens"] = row.prompt_tokens;
  j["cached_tokens"] = row.cached_tokens;
  j["generated_tokens"] = row.generated_tokens;
  j["window_s"] = row.window_s;
  j["output_tokens_per_s"] = OrNull(row.output_tokens_per_s);
  j["tokens_per_s"] = OrNull(row.tokens_per_s);
  j["ttft_p50_s"] = OrNull(row.ttft_p50_s);
  j["ttft_p99_s"] = OrNull(row.ttft_p99_s);
  j["e2e_p50_s"] = OrNull(row.e2e_p50_s);
  j["e2e_p99_s"] = OrNull(row.e2e_p99_s);
  j["device_s"] = row.device_s;
  j["joules"] = OrNull(row.joules);
  j["requests_with_energy"] = row.requests_with_energy;
  j["tokens_per_joule"] = OrNull(row.tokens_per_joule);
  j["energy_source"] = row.energy_source;
  j["cost"] = row.cost;
  j["cost_per_1m_tokens"] = OrNull(row.cost_per_1m_tokens);
  return j;
}

}  // namespace

std::string RenderReportJson(const Report& report) {
  nlohmann::ordered_json j;
  j["by"] = ReportGroupByName(report.by);
  j["since"] = report.since_unix_s ? nlohmann::ordered_json(FormatRfc3339(*report.since_unix_s))
                                   : nlohmann::ordered_json(nullptr);
  j["currency"] = report.currency;
  j["rows"] = nlohmann::ordered_json::array();
  for (const ReportRow& row : report.rows) j["rows"].push_back(RowJson(row));
  j["total"] = RowJson(report.total);
  j["files"] = report.files;
  j["partial_lines"] = report.num_partial_lines;
  j["malformed_lines"] = report.num_malformed_lines;
  return j.dump(2) + "\n";
}

}  // namespace tokenmill::metrics
