#include "tokenmill/loadgen/stats.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <set>

#include "absl/strings/str_join.h"
#include "tokenmill/metrics/report.h"

namespace tokenmill::loadgen {
namespace {

std::optional<double> Ratio(double num, double den) {
  if (den <= 0) return std::nullopt;
  return num / den;
}

bool MeetsSlo(const RequestResult& r, const Slo& slo) {
  if (slo.ttft_s.has_value()) {
    if (!r.first_token_s.has_value() || *r.first_token_s - r.send_s > *slo.ttft_s) return false;
  }
  // One output token has no time per output token: nothing to violate.
  if (slo.tpot_s.has_value() && r.output_tokens >= 2 && r.first_token_s.has_value()) {
    const double tpot = (r.end_s - *r.first_token_s) / static_cast<double>(r.output_tokens - 1);
    if (tpot > *slo.tpot_s) return false;
  }
  return true;
}

// Energy and cost: sums over the requests that reported them, never guessed for the rest.
void AddEnergyAndCost(const std::vector<const RequestSample*>& done, PointMetrics* m) {
  double joules = 0, cost = 0;
  int64_t tokens_j = 0, output_j = 0, tokens_c = 0, output_c = 0;
  bool any_joules = false, any_cost = false, any_positive_cost = false;
  std::set<std::string> sources, currencies;
  for (const RequestSample* s : done) {
    const RequestResult& r = s->result;
    const int64_t prompt = r.prompt_tokens.value_or(s->prompt_tokens);
    if (!r.energy_source.empty()) sources.insert(r.energy_source);
    if (r.joules.has_value()) {
      any_joules = true;
      joules += *r.joules;
      tokens_j += prompt + r.output_tokens;
      output_j += r.output_tokens;
    }
    if (r.cost.has_value()) {
      any_cost = true;
      any_positive_cost |= *r.cost > 0;
      cost += *r.cost;
      tokens_c += prompt + r.output_tokens;
      output_c += r.output_tokens;
      if (!r.currency.empty()) currencies.insert(r.currency);
    }
  }
  m->energy_source = sources.empty() ? "none" : absl::StrJoin(sources, "+");
  if (any_joules) {
    m->joules = joules;
    m->tokens_per_joule = Ratio(static_cast<double>(tokens_j), joules);
    m->output_tokens_per_joule = Ratio(static_cast<double>(output_j), joules);
  }
  // Servers without prices report a cost of 0 for every request; that is an unknown cost,
  // not a free one.
  if (any_cost && any_positive_cost) {
    m->cost = cost;
    m->currency = absl::StrJoin(currencies, "+");
    if (tokens_c > 0) m->cost_per_1m_tokens = cost / static_cast<double>(tokens_c) * 1e6;
    if (output_c > 0) m->cost_per_1m_output_tokens = cost / static_cast<double>(output_c) * 1e6;
  }
}

}  // namespace

Summary Summarize(std::vector<double> values) {
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.p50 = metrics::Percentile(values, 0.50);
  s.p90 = metrics::Percentile(values, 0.90);
  s.p99 = metrics::Percentile(values, 0.99);
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  return s;
}

PointMetrics ComputePointMetrics(const std::vector<RequestSample>& samples, const Slo& slo) {
  PointMetrics m;
  m.num_requests = static_cast<int64_t>(samples.size());
  if (samples.empty()) return m;
  double first_send = std::numeric_limits<double>::infinity();
  double last_end = -first_send;
  std::vector<double> ttft, tpot, itl, e2e, delay;
  std::vector<const RequestSample*> done;
  int64_t cached = 0, cached_prompt = 0;
  bool any_cached = false;
  for (const RequestSample& s : samples) {
    const RequestResult& r = s.result;
    first_send = std::min(first_send, r.send_s);
    last_end = std::max(last_end, r.end_s);
    delay.push_back(std::max(0.0, r.send_s - s.scheduled_s));
    if (!r.ok()) {
      ++m.num_errors;
      ++m.errors_by_code[r.error_code];
      continue;
    }
    done.push_back(&s);
    ++m.num_completed;
    if (!r.finish_reason.empty()) ++m.finish_reasons[r.finish_reason];
    m.prompt_tokens += s.prompt_tokens;
    m.output_tokens += r.output_tokens;
    if (r.prompt_tokens.has_value() && *r.prompt_tokens != s.prompt_tokens) {
      ++m.num_prompt_length_mismatches;
    }
    if (r.output_tokens != s.max_tokens) ++m.num_output_length_mismatches;
    e2e.push_back(r.end_s - r.send_s);
    if (r.first_token_s.has_value()) {
      ttft.push_back(*r.first_token_s - r.send_s);
      if (r.output_tokens >= 2) {
        tpot.push_back((r.end_s - *r.first_token_s) / static_cast<double>(r.output_tokens - 1));
      }
    }
    for (size_t k = 1; k < r.chunk_times_s.size(); ++k) {
      itl.push_back(r.chunk_times_s[k] - r.chunk_times_s[k - 1]);
    }
    if (r.cached_tokens.has_value()) {
      any_cached = true;
      cached += *r.cached_tokens;
      cached_prompt += r.prompt_tokens.value_or(s.prompt_tokens);
    }
    if (MeetsSlo(r, slo)) ++m.num_good;
  }
  m.duration_s = std::max(0.0, last_end - first_send);
  const double d = m.duration_s;
  m.request_throughput_req_s = Ratio(static_cast<double>(m.num_completed), d).value_or(0);
  m.output_throughput_tok_s = Ratio(static_cast<double>(m.output_tokens), d).value_or(0);
  m.total_token_throughput_tok_s =
      Ratio(static_cast<double>(m.prompt_tokens + m.output_tokens), d).value_or(0);
  m.ttft_s = Summarize(std::move(ttft));
  m.tpot_s = Summarize(std::move(tpot));
  m.itl_s = Summarize(std::move(itl));
  m.e2e_s = Summarize(std::move(e2e));
  m.dispatch_delay_s = Summarize(std::move(delay));
  if (slo.any()) m.goodput_req_s = Ratio(static_cast<double>(m.num_good), d).value_or(0);
  if (any_cached) m.prefix_cache_hit_rate = Ratio(static_cast<double>(cached), cached_prompt);
  AddEnergyAndCost(done, &m);
  return m;
}

}  // namespace tokenmill::loadgen
