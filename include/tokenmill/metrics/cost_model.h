// Cost model: what a request cost, from its attributed device time and energy.
//
//   cost = device_s / 3600 x num_devices x price_per_device_hour
//        + joules / 3.6e6 x pue x price_per_kwh        (only when energy is known)
//
// "Device" is a GPU on the CUDA backend (price per GPU-hour; a tensor-parallel engine occupies
// num_devices GPUs for every step) and the whole node on the CPU backend (price per node-hour,
// num_devices = 1). Energy is charged only when measured or estimated; with no meter the energy
// term is absent rather than guessed.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenmill::metrics {

struct PriceConfig {
  double price_per_device_hour = 0.0;  // currency per GPU-hour (CPU backend: per node-hour)
  double price_per_kwh = 0.0;          // currency per kWh of energy at the wall
  double pue = 1.0;                    // power usage effectiveness of the site, >= 1
  int num_devices = 1;                 // devices a step occupies (tensor-parallel degree)
};

// A per-model override; unset fields inherit the defaults.
struct PriceOverride {
  std::optional<double> price_per_device_hour;
  std::optional<double> price_per_kwh;
  std::optional<double> pue;
  std::optional<int> num_devices;
};

struct CostConfig {
  std::string currency = "USD";
  PriceConfig defaults;
  std::map<std::string, PriceOverride> per_model;  // key: model name as served

  // Errors name the field: "cost.per_model[llama].pue: must be >= 1, got 0.5".
  absl::Status Validate() const;
};

struct CostBreakdown {
  double device_cost = 0.0;
  std::optional<double> energy_cost;  // nullopt when the energy is unknown
  double total() const { return device_cost + energy_cost.value_or(0.0); }
};

// Immutable after construction; thread-safe.
class CostModel {
 public:
  // Requires: config.Validate().ok().
  explicit CostModel(CostConfig config);

  const std::string& currency() const { return config_.currency; }
  // Effective prices for `model` (defaults merged with its override).
  PriceConfig PricesFor(absl::string_view model) const;
  // Requires: device_s >= 0, joules >= 0 when given.
  CostBreakdown Cost(absl::string_view model, double device_s, std::optional<double> joules) const;

 private:
  CostConfig config_;
};

// cost / tokens x 1e6; nullopt when tokens == 0.
std::optional<double> CostPerMillionTokens(double cost, int64_t tokens);

}  // namespace tokenmill::metrics
