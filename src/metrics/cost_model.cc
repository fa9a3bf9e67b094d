#include "tokenmill/metrics/cost_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill::metrics {
namespace {

constexpr double kSecondsPerHour = 3600.0;
constexpr double kJoulesPerKwh = 3.6e6;

absl::Status CheckNonNegative(const std::string& field, double v) {
  if (!std::isfinite(v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be >= 0, got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckPrices(const std::string& prefix, std::optional<double> hour,
                         std::optional<double> kwh, std::optional<double> pue,
                         std::optional<int> devices) {
  if (hour) TM_RETURN_IF_ERROR(CheckNonNegative(prefix + "price_per_device_hour", *hour));
  if (kwh) TM_RETURN_IF_ERROR(CheckNonNegative(prefix + "price_per_kwh", *kwh));
  if (pue && (!std::isfinite(*pue) || *pue < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "pue: must be >= 1, got ", *pue));
  }
  if (devices && *devices < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "num_devices: must be >= 1, got ", *devices));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CostConfig::Validate() const {
  if (currency.empty()) return absl::InvalidArgumentError("cost.currency: must not be empty");
  TM_RETURN_IF_ERROR(CheckPrices("cost.", defaults.price_per_device_hour, defaults.price_per_kwh,
                                 defaults.pue, defaults.num_devices));
  for (const auto& [model, o] : per_model) {
    TM_RETURN_IF_ERROR(CheckPrices(absl::StrCat("cost.per_model[", model, "]."),
                                   o.price_per_device_hour, o.price_per_kwh, o.pue, o.num_devices));
  }
  return absl::OkStatus();
}

CostModel::CostModel(CostConfig config) : config_(std::move(config)) {
  const absl::Status s = config_.Validate();
  TM_CHECK(s.ok(), s.ToString());
}

PriceConfig CostModel::PricesFor(absl::string_view model) const {
  PriceConfig p = config_.defaults;
  auto it = config_.per_model.find(std::string(model));
  if (it == config_.per_model.end()) return p;
  const PriceOverride& o = it->second;
  p.price_per_device_hour = o.price_per_device_hour.value_or(p.price_per_device_hour);
  p.price_per_kwh = o.price_per_kwh.value_or(p.price_per_kwh);
  p.pue = o.pue.value_or(p.pue);
  p.num_devices = o.num_devices.value_or(p.num_devices);
  return p;
}

CostBreakdown CostModel::Cost(absl::string_view model, double device_s,
                              std::optional<double> joules) const {
  TM_CHECK(device_s >= 0, "device time must be >= 0 s, got ", device_s);
  const PriceConfig p = PricesFor(model);
  CostBreakdown c;
  c.device_cost = device_s / kSecondsPerHour * p.num_devices * p.price_per_device_hour;
  if (joules.has_value()) {
    TM_CHECK(*joules >= 0, "energy must be >= 0 J, got ", *joules);
    c.energy_cost = *joules / kJoulesPerKwh * p.pue * p.price_per_kwh;
  }
  return c;
}

std::optional<double> CostPerMillionTokens(double cost, int64_t tokens) {
  if (tokens <= 0) return std::nullopt;
  return cost / static_cast<double>(tokens) * 1e6;
}

}  // namespace tokenmill::metrics
