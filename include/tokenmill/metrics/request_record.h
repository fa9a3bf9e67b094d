// RequestRecord: what a finished request reports. The same figures feed the HTTP `usage`
// object ("tokenmill" block), the gRPC final message, the Prometheus counters and one ledger
// line. Raw quantities are stored; ratios (tokens per joule) are derived once, here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tokenmill/metrics/cost_model.h"
#include "tokenmill/metrics/energy_meter.h"
#include "tokenmill/metrics/step_accounting.h"

namespace tokenmill::metrics {

struct RequestRecord {
  std::string request_id;
  std::string tenant;  // API key's tenant; "" is written as is (metrics show it as "default")
  std::string model;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served from the prefix cache
  int64_t generated_tokens = 0;
  std::optional<double> queue_s;  // arrival -> first scheduled; nullopt if never scheduled
  std::optional<double> ttft_s;   // arrival -> first generated token
  std::optional<double> tpot_s;   // (finish - first token) / (generated - 1); needs >= 2 tokens
  double e2e_s = 0.0;             // arrival -> finish
  double device_s = 0.0;          // attributed device (GPU or node) time, seconds
  std::optional<double> joules;   // attributed energy; nullopt = unknown (never 0 for unknown)
  std::optional<double> tokens_per_joule;  // (prompt + generated) / joules
  double cost = 0.0;
  std::string currency;
  EnergySource energy_source = EnergySource::kNone;  // kNone exactly when joules is unknown
  std::string finish_reason;  // "stop", "length", "abort" (client went away), "error"
  std::string error_code;     // "" unless finish_reason == "error", e.g. "resource_exhausted"
  double time_unix_s = 0.0;   // wall-clock time when the request finished

  int64_t total_tokens() const { return prompt_tokens + generated_tokens; }
  bool is_error() const { return !error_code.empty(); }
};

// Times on the engine's monotonic clock (Clock::NowSeconds).
struct RequestTimes {
  double arrival_s = 0.0;
  std::optional<double> first_scheduled_s;
  std::optional<double> first_token_s;
  double finish_s = 0.0;
};

// Fills the derived fields of `record` — queue_s, ttft_s, tpot_s, e2e_s, device_s, joules,
// tokens_per_joule, cost, currency, energy_source — from the engine's times, the request's
// accumulated step usage and the cost model. The caller has already set identity, token
// counts, finish_reason, error_code and time_unix_s. Energy is reported only when `meter`
// measures (or estimates) it and every step of the request had a reading.
void FinalizeRequestRecord(const RequestTimes& times, const SequenceUsage& usage,
                           const CostModel& cost_model, EnergySource meter, RequestRecord& record);

// The "tokenmill" block of the HTTP usage object / gRPC final message: "queue_s", "ttft_s",
// "tpot_s", "e2e_s", "joules", "tokens_per_joule", "cost", "currency", "energy_source".
// Unknown figures are null. Keys in that order (ordered_json converts to nlohmann::json).
nlohmann::ordered_json ToUsageJson(const RequestRecord& record);

// One ledger line (without the newline): every field, "time" first as RFC 3339 UTC with
// microseconds, unknown figures as null.
nlohmann::ordered_json ToLedgerJson(const RequestRecord& record);
// Inverse of ToLedgerJson. Errors name the field.
absl::StatusOr<RequestRecord> RecordFromLedgerJson(const nlohmann::json& j);

// "2024-05-01T12:00:00.250000Z" <-> Unix seconds.
std::string FormatRfc3339(double unix_s);
absl::StatusOr<double> ParseRfc3339(absl::string_view text);

}  // namespace tokenmill::metrics
