// The figures of one load point, from the client-side timings of its requests
// (docs/bench.md gives every definition).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tokenmill/loadgen/target.h"

namespace tokenmill::loadgen {

// p50/p90/p99 interpolate linearly between order statistics (numpy's default, as
// metrics::Percentile); all nullopt when there is no value.
struct Summary {
  std::optional<double> p50, p90, p99, mean;
  int64_t count = 0;
};
Summary Summarize(std::vector<double> values);

// Service-level objectives for goodput; an unset one is not checked.
struct Slo {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  bool any() const { return ttft_s.has_value() || tpot_s.has_value(); }
};

// A measured request: what was asked and what happened.
struct RequestSample {
  int64_t session = 0;
  int turn = 0;
  int prompt_tokens = 0;   // sent
  int max_tokens = 0;      // asked for
  double scheduled_s = 0;  // when the load model wanted it sent (rate mode: its arrival)
  RequestResult result;
};

struct PointMetrics {
  int64_t num_requests = 0;   // measured, ok or not
  int64_t num_completed = 0;  // ok
  int64_t num_errors = 0;
  double duration_s = 0;                    // first send -> last end over every measured request
  double request_throughput_req_s = 0;      // completed / duration
  double output_throughput_tok_s = 0;       // output tokens of completed / duration
  double total_token_throughput_tok_s = 0;  // (prompt + output) of completed / duration
  int64_t prompt_tokens = 0;                // sent, of completed requests
  int64_t output_tokens = 0;                // completed requests
  Summary ttft_s, tpot_s, itl_s, e2e_s;
  Summary dispatch_delay_s;             // send - scheduled: the client falling behind its arrivals
  std::optional<double> goodput_req_s;  // completed meeting every SLO / duration
  int64_t num_good = 0;
  std::optional<double> prefix_cache_hit_rate;    // cached / prompt tokens, as servers report
  std::optional<double> joules;                   // requests whose energy was reported
  std::optional<double> tokens_per_joule;         // (prompt + output) / joules of those
  std::optional<double> output_tokens_per_joule;  // output / joules of those
  std::string energy_source;  // "nvml", "rapl", "estimated", "none", '+'-joined when mixed
  // Requests whose cost was reported; nullopt when none was, or every reported cost was 0
  // (what a server without prices says).
  std::optional<double> cost;
  std::string currency;
  std::optional<double> cost_per_1m_tokens;         // cost / (prompt + output) x 1e6
  std::optional<double> cost_per_1m_output_tokens;  // cost / output x 1e6
  std::map<std::string, int64_t> errors_by_code;
  std::map<std::string, int64_t> finish_reasons;
  // Completed requests whose server-side prompt count differs from what was sent, and
  // whose output length differs from max_tokens (a server ignoring ignore_eos/min_tokens).
  int64_t num_prompt_length_mismatches = 0;
  int64_t num_output_length_mismatches = 0;
};

PointMetrics ComputePointMetrics(const std::vector<RequestSample>& samples, const Slo& slo);

}  // namespace tokenmill::loadgen
