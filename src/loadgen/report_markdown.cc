// report.md: the run in one page — setup, a row per load point, the summary point's
// percentiles, energy and cost, errors and the plots.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tokenmill/loadgen/report.h"

namespace tokenmill::loadgen {
namespace {

// Milliseconds, or "-" when unknown.
std::string Ms(const std::optional<double>& s) {
  return s.has_value() ? absl::StrFormat("%.1f", *s * 1e3) : "-";
}

std::string Num(const std::optional<double>& v, int digits = 2) {
  return v.has_value() ? absl::StrFormat("%.*f", digits, *v) : "-";
}

std::string LoadCell(const LoadPoint& p) {
  return p.mode == LoadMode::kConcurrency ? absl::StrCat("c=", static_cast<int64_t>(p.value))
                                          : absl::StrFormat("%g req/s", p.value);
}

std::string ErrorsCell(const PointMetrics& m) {
  if (m.num_errors == 0) return "0";
  std::vector<std::string> parts;
  for (const auto& [code, n] : m.errors_by_code) parts.push_back(absl::StrCat(code, " ", n));
  return absl::StrCat(m.num_errors, " (", absl::StrJoin(parts, ", "), ")");
}

void AppendPointsTable(const BenchReport& r, std::string* out) {
  absl::StrAppend(out,
                  "| load | requests | req/s | output tok/s | TTFT p50 / p99 (ms) | "
                  "TPOT p50 / p99 (ms) | ITL p50 / p99 (ms) | e2e p50 / p99 (s) | goodput req/s | "
                  "prefix hit | tokens/J | cost / 1M tok | errors |\n",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const PointReport& p : r.points) {
    const PointMetrics& m = p.metrics;
    absl::StrAppend(out, "| ", LoadCell(p.load), " | ", m.num_completed, " | ",
                    absl::StrFormat("%.2f", m.request_throughput_req_s), " | ",
                    absl::StrFormat("%.1f", m.output_throughput_tok_s), " | ", Ms(m.ttft_s.p50),
                    " / ", Ms(m.ttft_s.p99), " | ", Ms(m.tpot_s.p50), " / ", Ms(m.tpot_s.p99),
                    " | ", Ms(m.itl_s.p50), " / ", Ms(m.itl_s.p99), " | ", Num(m.e2e_s.p50, 3),
                    " / ", Num(m.e2e_s.p99, 3), " | ", Num(m.goodput_req_s), " | ",
                    m.prefix_cache_hit_rate.has_value()
                        ? absl::StrFormat("%.1f%%", *m.prefix_cache_hit_rate * 100)
                        : "-",
                    " | ", Num(m.tokens_per_joule, 1), " | ",
                    m.cost_per_1m_tokens.has_value()
                        ? absl::StrFormat("%.4f %s", *m.cost_per_1m_tokens, m.currency)
                        : "-",
                    " | ", ErrorsCell(m), " |\n");
  }
}

void AppendSummary(const PointReport& p, std::string* out) {
  const PointMetrics& m = p.metrics;
  absl::StrAppend(out, "\n## Summary point: ", LoadPointName(p.load), "\n\n",
                  "| figure | p50 | p90 | p99 | mean |\n|---|---:|---:|---:|---:|\n");
  auto row = [&](const char* name, const Summary& s) {
    absl::StrAppend(out, "| ", name, " (ms) | ", Ms(s.p50), " | ", Ms(s.p90), " | ", Ms(s.p99),
                    " | ", Ms(s.mean), " |\n");
  };
  row("TTFT", m.ttft_s);
  row("TPOT", m.tpot_s);
  row("ITL", m.itl_s);
  row("e2e latency", m.e2e_s);
  row("dispatch delay", m.dispatch_delay_s);
  absl::StrAppend(out, "\n- ", m.num_completed, " of ", m.num_requests, " requests completed in ",
                  absl::StrFormat("%.2f", m.duration_s),
                  " s: ", absl::StrFormat("%.2f", m.request_throughput_req_s), " req/s, ",
                  absl::StrFormat("%.1f", m.output_throughput_tok_s), " output tok/s, ",
                  absl::StrFormat("%.1f", m.total_token_throughput_tok_s), " total tok/s (",
                  m.prompt_tokens, " prompt + ", m.output_tokens, " output tokens)\n");
  absl::StrAppend(
      out, "- energy: ",
      m.joules.has_value() ? absl::StrFormat("%.1f J, %.2f tokens/J, %.2f output tokens/J (%s)",
                                             *m.joules, *m.tokens_per_joule,
                                             m.output_tokens_per_joule.value_or(0), m.energy_source)
                           : std::string("unknown (the target reported no energy)"),
      "\n- cost: ",
      m.cost.has_value() ? absl::StrFormat("%.6f %s, %s per 1M tokens, %s per 1M output tokens",
                                           *m.cost, m.currency, Num(m.cost_per_1m_tokens, 4),
                                           Num(m.cost_per_1m_output_tokens, 4))
                         : std::string("unknown (no prices reported)"),
      "\n");
  if (m.num_prompt_length_mismatches > 0 || m.num_output_length_mismatches > 0) {
    absl::StrAppend(out, "- length mismatches: ", m.num_prompt_length_mismatches,
                    " prompts counted differently by the server, ", m.num_output_length_mismatches,
                    " outputs not of the requested length (server ignores ignore_eos?)\n");
  }
  if (p.num_truncated_sessions > 0) {
    absl::StrAppend(out, "- ", p.num_truncated_sessions, " of ", p.num_sessions,
                    " sessions were cut short by the context length\n");
  }
}

}  // namespace

std::string ReportMarkdown(const BenchReport& r, const std::vector<std::string>& plots) {
  std::string out = "# tokenmill bench\n\n";
  const auto& c = r.config;
  auto field = [&](const char* key) {
    return c.contains(key) ? (c[key].is_string() ? c[key].get<std::string>() : c[key].dump())
                           : std::string("-");
  };
  absl::StrAppend(
      &out, "- target: `", field("target"), "`, model `", field("model"), "`\n", "- workload: `",
      field("workload"), "`, seed ", r.seed, ", warm-up ", r.warmup_requests, " requests\n",
      "- date: ", r.date, ", commit ", r.commit.empty() ? "unknown" : r.commit, "\n",
      "- machine: ", r.machine.cpu, " (", r.machine.num_cpus, " CPUs)",
      r.machine.gpus.empty() ? "" : absl::StrCat(", ", absl::StrJoin(r.machine.gpus, "; ")),
      "\n\n");
  AppendPointsTable(r, &out);
  const int summary = SummaryPointIndex(r);
  if (summary >= 0) AppendSummary(r.points[summary], &out);
  if (!plots.empty()) {
    absl::StrAppend(&out, "\n## Plots\n\n");
    for (const std::string& p : plots) absl::StrAppend(&out, "![", p, "](", p, ")\n\n");
  }
  return out;
}

}  // namespace tokenmill::loadgen
