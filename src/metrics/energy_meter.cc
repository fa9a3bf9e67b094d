#include "tokenmill/metrics/energy_meter.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill::metrics {

const char* EnergySourceName(EnergySource source) {
  switch (source) {
    case EnergySource::kNone:
      return "none";
    case EnergySource::kNvml:
      return "nvml";
    case EnergySource::kRapl:
      return "rapl";
    case EnergySource::kEstimated:
      return "estimated";
  }
  return "none";
}

absl::StatusOr<EnergySource> ParseEnergySource(absl::string_view name) {
  for (EnergySource s :
       {EnergySource::kNone, EnergySource::kNvml, EnergySource::kRapl, EnergySource::kEstimated}) {
    if (name == EnergySourceName(s)) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("energy_source: unknown value '", name, "' (none|nvml|rapl|estimated)"));
}

StaticEnergyMeter::StaticEnergyMeter(double watts, const Clock& clock)
    : watts_(watts), clock_(clock), start_s_(clock.NowSeconds()) {
  TM_CHECK(watts > 0 && std::isfinite(watts), "static power must be > 0 W, got ", watts);
}

std::optional<int64_t> StaticEnergyMeter::ReadEnergyMicrojoules() {
  const double seconds = std::max(0.0, clock_.NowSeconds() - start_s_);
  return std::llround(watts_ * seconds * 1e6);
}

std::string StaticEnergyMeter::Describe() const {
  return absl::StrFormat("estimated: static power model, %.1f W (configured, not measured)",
                         watts_);
}

std::optional<int64_t> FakeEnergyMeter::ReadEnergyMicrojoules() {
  absl::MutexLock lock(&mu_);
  if (unavailable_) return std::nullopt;
  return energy_uj_;
}

std::vector<DeviceStats> FakeEnergyMeter::ReadDeviceStats() {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void FakeEnergyMeter::AddMicrojoules(int64_t uj) {
  absl::MutexLock lock(&mu_);
  energy_uj_ += uj;
}

void FakeEnergyMeter::SetUnavailable(bool unavailable) {
  absl::MutexLock lock(&mu_);
  unavailable_ = unavailable;
}

void FakeEnergyMeter::SetDeviceStats(std::vector<DeviceStats> stats) {
  absl::MutexLock lock(&mu_);
  stats_ = std::move(stats);
}

namespace {

absl::StatusOr<std::unique_ptr<EnergyMeter>> AutoDetect(const EnergyMeterOptions& options,
                                                        const Clock& clock) {
  if (options.gpu_backend) {
    auto nvml = CreateNvmlEnergyMeter(options.nvml, clock);
    if (nvml.ok()) return nvml;
    spdlog::info("energy: NVML unavailable ({}); trying RAPL",
                 std::string(nvml.status().message()));
  }
  auto rapl = CreateRaplEnergyMeter(options.rapl);
  if (rapl.ok()) return rapl;
  spdlog::info("energy: RAPL unavailable ({}); energy figures will be absent",
               std::string(rapl.status().message()));
  return std::unique_ptr<EnergyMeter>(std::make_unique<NoEnergyMeter>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<EnergyMeter>> CreateEnergyMeter(const EnergyMeterOptions& options,
                                                               const Clock& clock) {
  std::unique_ptr<EnergyMeter> meter;
  if (options.mode == "auto") {
    TM_ASSIGN_OR_RETURN(meter, AutoDetect(options, clock));
  } else if (options.mode == "nvml") {
    TM_ASSIGN_OR_RETURN(meter, CreateNvmlEnergyMeter(options.nvml, clock));
  } else if (options.mode == "rapl") {
    TM_ASSIGN_OR_RETURN(meter, CreateRaplEnergyMeter(options.rapl));
  } else if (options.mode == "none") {
    meter = std::make_unique<NoEnergyMeter>();
  } else if (options.mode == "static") {
    if (!(options.static_watts > 0) || !std::isfinite(options.static_watts)) {
      return absl::InvalidArgumentError(
          absl::StrCat("energy.static_watts: must be > 0 with energy mode 'static', got ",
                       options.static_watts));
    }
    meter = std::make_unique<StaticEnergyMeter>(options.static_watts, clock);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("energy.mode: unknown value '", options.mode,
                                                   "' (auto|nvml|rapl|static|none)"));
  }
  spdlog::info("energy meter: {}", meter->Describe());
  return meter;
}

}  // namespace tokenmill::metrics
