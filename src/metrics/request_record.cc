#include "tokenmill/metrics/request_record.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tokenmill/core/status.h"

namespace tokenmill::metrics {

void FinalizeRequestRecord(const RequestTimes& times, const SequenceUsage& usage,
                           const CostModel& cost_model, EnergySource meter, RequestRecord& record) {
  record.e2e_s = std::max(0.0, times.finish_s - times.arrival_s);
  record.queue_s.reset();
  record.ttft_s.reset();
  record.tpot_s.reset();
  if (times.first_scheduled_s) record.queue_s = *times.first_scheduled_s - times.arrival_s;
  if (times.first_token_s) {
    record.ttft_s = *times.first_token_s - times.arrival_s;
    if (record.generated_tokens >= 2) {
      record.tpot_s = (times.finish_s - *times.first_token_s) /
                      static_cast<double>(record.generated_tokens - 1);
    }
  }
  record.device_s = usage.device_seconds();
  record.joules.reset();
  record.tokens_per_joule.reset();
  record.energy_source = EnergySource::kNone;
  if (meter != EnergySource::kNone && usage.is_energy_known) {
    record.joules = usage.joules();
    record.energy_source = meter;
    if (*record.joules > 0) record.tokens_per_joule = record.total_tokens() / *record.joules;
  }
  record.cost = cost_model.Cost(record.model, record.device_s, record.joules).total();
  record.currency = cost_model.currency();
}

namespace {

nlohmann::ordered_json OrNull(const std::optional<double>& v) {
  return v.has_value() ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

namespace {

void AppendUsage(const RequestRecord& r, nlohmann::ordered_json& j) {
  j["queue_s"] = OrNull(r.queue_s);
  j["ttft_s"] = OrNull(r.ttft_s);
  j["tpot_s"] = OrNull(r.tpot_s);
  j["e2e_s"] = r.e2e_s;
  j["joules"] = OrNull(r.joules);
  j["tokens_per_joule"] = OrNull(r.tokens_per_joule);
  j["cost"] = r.cost;
  j["currency"] = r.currency;
  j["energy_source"] = EnergySourceName(r.energy_source);
}

}  // namespace

nlohmann::ordered_json ToUsageJson(const RequestRecord& r) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  AppendUsage(r, j);
  return j;
}

nlohmann::ordered_json ToLedgerJson(const RequestRecord& r) {
  // Key order is for people reading the file: when and who first, then sizes, then figures.
  nlohmann::ordered_json j;
  j["time"] = FormatRfc3339(r.time_unix_s);
  j["request_id"] = r.request_id;
  j["tenant"] = r.tenant;
  j["model"] = r.model;
  j["finish_reason"] = r.finish_reason;
  j["error_code"] = r.error_code;
  j["prompt_tokens"] = r.prompt_tokens;
  j["cached_tokens"] = r.cached_tokens;
  j["generated_tokens"] = r.generated_tokens;
  j["device_s"] = r.device_s;
  AppendUsage(r, j);
  return j;
}

namespace {

// Field readers: a missing or mistyped field is an error naming it.
absl::Status Missing(const char* key, const char* want) {
  return absl::InvalidArgumentError(absl::StrCat("field '", key, "': expected ", want));
}

absl::Status GetString(const nlohmann::json& j, const char* key, std::string& out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return Missing(key, "a string");
  out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status GetInt(const nlohmann::json& j, const char* key, int64_t& out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return Missing(key, "an integer");
  out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const nlohmann::json& j, const char* key, double& out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return Missing(key, "a number");
  out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetOptional(const nlohmann::json& j, const char* key, std::optional<double>& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  if (!it->is_number()) return Missing(key, "a number or null");
  out = it->get<double>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RequestRecord> RecordFromLedgerJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("ledger line: not a JSON object");
  RequestRecord r;
  std::string time, source;
  TM_RETURN_IF_ERROR(GetString(j, "time", time));
  TM_ASSIGN_OR_RETURN(r.time_unix_s, ParseRfc3339(time));
  TM_RETURN_IF_ERROR(GetString(j, "request_id", r.request_id));
  TM_RETURN_IF_ERROR(GetString(j, "tenant", r.tenant));
  TM_RETURN_IF_ERROR(GetString(j, "model", r.model));
  TM_RETURN_IF_ERROR(GetInt(j, "prompt_tokens", r.prompt_tokens));
  TM_RETURN_IF_ERROR(GetInt(j, "cached_tokens", r.cached_tokens));
  TM_RETURN_IF_ERROR(GetInt(j, "generated_tokens", r.generated_tokens));
  TM_RETURN_IF_ERROR(GetOptional(j, "queue_s", r.queue_s));
  TM_RETURN_IF_ERROR(GetOptional(j, "ttft_s", r.ttft_s));
  TM_RETURN_IF_ERROR(GetOptional(j, "tpot_s", r.tpot_s));
  TM_RETURN_IF_ERROR(GetDouble(j, "e2e_s", r.e2e_s));
  TM_RETURN_IF_ERROR(GetDouble(j, "device_s", r.device_s));
  TM_RETURN_IF_ERROR(GetOptional(j, "joules", r.joules));
  TM_RETURN_IF_ERROR(GetOptional(j, "tokens_per_joule", r.tokens_per_joule));
  TM_RETURN_IF_ERROR(GetDouble(j, "cost", r.cost));
  TM_RETURN_IF_ERROR(GetString(j, "currency", r.currency));
  TM_RETURN_IF_ERROR(GetString(j, "energy_source", source));
  TM_ASSIGN_OR_RETURN(r.energy_source, ParseEnergySource(source));
  TM_RETURN_IF_ERROR(GetString(j, "finish_reason", r.finish_reason));
  TM_RETURN_IF_ERROR(GetString(j, "error_code", r.error_code));
  return r;
}

std::string FormatRfc3339(double unix_s) {
  const absl::Time t = absl::FromUnixMicros(std::llround(unix_s * 1e6));
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<double> ParseRfc3339(absl::string_view text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(text), &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat("time '", text, "': not RFC 3339 (", err, ")"));
  }
  return absl::ToUnixMicros(t) * 1e-6;
}

}  // namespace tokenmill::metrics
