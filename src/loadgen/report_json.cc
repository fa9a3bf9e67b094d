// report.json: every key is documented in docs/bench.md; unknown figures are null.
#include "tokenmill/loadgen/report.h"

namespace tokenmill::loadgen {
namespace {

using ojson = nlohmann::ordered_json;

ojson OrNull(const std::optional<double>& v) { return v.has_value() ? ojson(*v) : ojson(nullptr); }

ojson CountsJson(const std::map<std::string, int64_t>& counts) {
  ojson j = ojson::object();
  for (const auto& [k, v] : counts) j[k] = v;
  return j;
}

ojson MachineJson(const MachineInfo& m) {
  return {{"hostname", m.hostname},         {"cpu", m.cpu}, {"num_cpus", m.num_cpus},
          {"memory_bytes", m.memory_bytes}, {"os", m.os},   {"gpus", m.gpus}};
}

}  // namespace

int SummaryPointIndex(const BenchReport& report) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(report.points.size()); ++i) {
    if (best < 0 || report.points[i].metrics.output_throughput_tok_s >
                        report.points[best].metrics.output_throughput_tok_s) {
      best = i;
    }
  }
  return best;
}

ojson SummaryJson(const Summary& s) {
  return {{"p50", OrNull(s.p50)},
          {"p90", OrNull(s.p90)},
          {"p99", OrNull(s.p99)},
          {"mean", OrNull(s.mean)}};
}

ojson PointJson(const PointReport& p) {
  const PointMetrics& m = p.metrics;
  ojson j;
  j["load"] = {{"mode", p.load.mode == LoadMode::kConcurrency ? "concurrency" : "rate"},
               {"value", p.load.value}};
  j["num_requests"] = m.num_requests;
  j["num_completed"] = m.num_completed;
  j["duration_s"] = m.duration_s;
  j["request_throughput_req_s"] = m.request_throughput_req_s;
  j["output_throughput_tok_s"] = m.output_throughput_tok_s;
  j["total_token_throughput_tok_s"] = m.total_token_throughput_tok_s;
  j["prompt_tokens"] = m.prompt_tokens;
  j["output_tokens"] = m.output_tokens;
  j["ttft_s"] = SummaryJson(m.ttft_s);
  j["tpot_s"] = SummaryJson(m.tpot_s);
  j["itl_s"] = SummaryJson(m.itl_s);
  j["e2e_s"] = SummaryJson(m.e2e_s);
  j["dispatch_delay_s"] = SummaryJson(m.dispatch_delay_s);
  j["goodput_req_s"] = OrNull(m.goodput_req_s);
  j["num_good"] = m.goodput_req_s.has_value() ? ojson(m.num_good) : ojson(nullptr);
  j["prefix_cache_hit_rate"] = OrNull(m.prefix_cache_hit_rate);
  j["joules"] = OrNull(m.joules);
  j["tokens_per_joule"] = OrNull(m.tokens_per_joule);
  j["output_tokens_per_joule"] = OrNull(m.output_tokens_per_joule);
  j["energy_source"] = m.energy_source;
  j["cost"] = OrNull(m.cost);
  j["currency"] = m.currency.empty() ? ojson(nullptr) : ojson(m.currency);
  j["cost_per_1m_tokens"] = OrNull(m.cost_per_1m_tokens);
  j["cost_per_1m_output_tokens"] = OrNull(m.cost_per_1m_output_tokens);
  j["errors"] = {{"total", m.num_errors}, {"by_code", CountsJson(m.errors_by_code)}};
  j["finish_reasons"] = CountsJson(m.finish_reasons);
  j["prompt_length_mismatches"] = m.num_prompt_length_mismatches;
  j["output_length_mismatches"] = m.num_output_length_mismatches;
  j["sessions"] = p.num_sessions;
  j["truncated_sessions"] = p.num_truncated_sessions;
  return j;
}

ojson RequestSampleJson(int point, const RequestSample& s, double start_s) {
  const RequestResult& r = s.result;
  auto rel = [&](std::optional<double> t) {
    return t.has_value() ? ojson(*t - start_s) : ojson(nullptr);
  };
  ojson j;
  j["point"] = point;
  j["session"] = s.session;
  j["turn"] = s.turn;
  j["prompt_tokens"] = s.prompt_tokens;
  j["max_tokens"] = s.max_tokens;
  j["scheduled_s"] = s.scheduled_s - start_s;
  j["send_s"] = r.send_s - start_s;
  j["first_token_s"] = rel(r.first_token_s);
  j["end_s"] = r.end_s - start_s;
  j["output_tokens"] = r.output_tokens;
  j["server_prompt_tokens"] =
      r.prompt_tokens.has_value() ? ojson(*r.prompt_tokens) : ojson(nullptr);
  j["cached_tokens"] = r.cached_tokens.has_value() ? ojson(*r.cached_tokens) : ojson(nullptr);
  j["joules"] = OrNull(r.joules);
  j["cost"] = OrNull(r.cost);
  j["finish_reason"] = r.finish_reason;
  ojson gaps = ojson::array();
  for (size_t k = 1; k < r.chunk_times_s.size(); ++k) {
    gaps.push_back(r.chunk_times_s[k] - r.chunk_times_s[k - 1]);
  }
  j["itl_s"] = std::move(gaps);
  j["error_code"] = r.ok() ? ojson(nullptr) : ojson(r.error_code);
  if (!r.ok()) j["error_message"] = r.error_message;
  return j;
}

ojson ReportJson(const BenchReport& r) {
  ojson j;
  j["schema_version"] = kReportSchemaVersion;
  j["tool"] = "tokenmill bench";
  j["date"] = r.date;
  j["commit"] = r.commit.empty() ? ojson(nullptr) : ojson(r.commit);
  j["seed"] = r.seed;
  j["machine"] = MachineJson(r.machine);
  j["config"] = r.config;
  j["warmup"] = {{"requests", r.warmup_requests}, {"errors", r.warmup_errors}};
  const int summary = SummaryPointIndex(r);
  j["summary_point"] = summary >= 0 ? ojson(summary) : ojson(nullptr);
  if (summary >= 0) {
    const ojson point = PointJson(r.points[summary]);
    for (const auto& [key, value] : point.items()) j[key] = value;
  } else {
    // No point ran: the contract's keys still exist, as nulls.
    for (const char* k : {"output_throughput_tok_s", "request_throughput_req_s", "tokens_per_joule",
                          "cost_per_1m_tokens"}) {
      j[k] = nullptr;
    }
    for (const char* k : {"ttft_s", "tpot_s", "itl_s", "e2e_s"}) j[k] = SummaryJson(Summary{});
    j["errors"] = {{"total", 0}, {"by_code", ojson::object()}};
  }
  ojson points = ojson::array();
  for (const PointReport& p : r.points) points.push_back(PointJson(p));
  j["points"] = std::move(points);
  return j;
}

}  // namespace tokenmill::loadgen
