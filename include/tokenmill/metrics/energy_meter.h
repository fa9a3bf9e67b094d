// EnergyMeter: the "PowerSource" seam of STYLE.md. Injected into the engine so tests pass a
// FakeEnergyMeter. Implementations: NVML (GPU energy counter, loaded with dlopen at run time),
// RAPL (CPU packages via /sys/class/powercap), Static (operator-configured watts; every figure
// is labelled "estimated") and None (energy unknown). Never an invented number: where nothing
// measures energy, readings are std::nullopt, not 0.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "tokenmill/core/clock.h"

namespace tokenmill::metrics {

enum class EnergySource { kNone, kNvml, kRapl, kEstimated };

// "none", "nvml", "rapl", "estimated": the `energy_source` value of the API, ledger and metrics.
const char* EnergySourceName(EnergySource source);
absl::StatusOr<EnergySource> ParseEnergySource(absl::string_view name);

// Live figures of one device for gauges. Fields a device does not report stay nullopt.
struct DeviceStats {
  int index = 0;                      // NVML index (GPU) or RAPL zone order
  std::string name;                   // "NVIDIA H100 80GB HBM3", "package-0"
  std::optional<double> utilization;  // 0..1, fraction of time a kernel ran (NVML)
  std::optional<double> power_watts;  // instantaneous board power (NVML)
};

// Thread-safe: every method may be called from any thread (engine step loop, /metrics scrape).
class EnergyMeter {
 public:
  virtual ~EnergyMeter() = default;
  virtual EnergySource source() const = 0;
  // Energy consumed since the meter was created, in microjoules, summed over every device the
  // meter covers; non-decreasing. std::nullopt when unknown (never 0 for "unknown").
  virtual std::optional<int64_t> ReadEnergyMicrojoules() = 0;
  // Per-device utilization and power, for gauges; empty when the meter has none.
  virtual std::vector<DeviceStats> ReadDeviceStats() { return {}; }
  // One line for the startup log, e.g. "nvml: 2 GPUs, total-energy counter".
  virtual std::string Describe() const = 0;
};

// Energy unknown: every reading is std::nullopt.
class NoEnergyMeter final : public EnergyMeter {
 public:
  EnergySource source() const override { return EnergySource::kNone; }
  std::optional<int64_t> ReadEnergyMicrojoules() override { return std::nullopt; }
  std::string Describe() const override { return "none: no energy meter, energy is unknown"; }
};

// Operator-configured constant power: energy = watts x (now - creation). Source kEstimated.
// Requires: watts > 0; `clock` outlives the meter.
class StaticEnergyMeter final : public EnergyMeter {
 public:
  StaticEnergyMeter(double watts, const Clock& clock);
  EnergySource source() const override { return EnergySource::kEstimated; }
  std::optional<int64_t> ReadEnergyMicrojoules() override;
  std::string Describe() const override;

 private:
  const double watts_;
  const Clock& clock_;
  const double start_s_;
};

// Test double: energy and device stats are set by the test. Thread-safe.
class FakeEnergyMeter final : public EnergyMeter {
 public:
  explicit FakeEnergyMeter(EnergySource source = EnergySource::kNvml) : source_(source) {}
  EnergySource source() const override { return source_; }
  std::optional<int64_t> ReadEnergyMicrojoules() override;
  std::vector<DeviceStats> ReadDeviceStats() override;
  std::string Describe() const override { return "fake"; }

  void AddMicrojoules(int64_t uj);
  // Makes the next readings fail (nullopt) until called with false.
  void SetUnavailable(bool unavailable);
  void SetDeviceStats(std::vector<DeviceStats> stats);

 private:
  const EnergySource source_;
  mutable absl::Mutex mu_;
  int64_t energy_uj_ ABSL_GUARDED_BY(mu_) = 0;
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<DeviceStats> stats_ ABSL_GUARDED_BY(mu_);
};

struct NvmlMeterOptions {
  std::string library = "libnvidia-ml.so.1";  // dlopen name or path (tests load a fake)
  // NVML device indices to meter (NVML ignores CUDA_VISIBLE_DEVICES, so the caller maps);
  // empty = every GPU of the node.
  std::vector<int> device_indices;
  // Only for GPUs without the total-energy counter (pre-Volta): power is integrated with the
  // trapezoid rule on every read and, when > 0, by a background sampler at this period so idle
  // stretches between reads are covered too.
  double power_sample_interval_s = 0.1;
};

// Loads NVML with dlopen. Returns an error (never aborts) when the library, the driver or a GPU
// is missing or a device can give neither energy nor power, so the engine can fall back.
// Requires: `clock` outlives the meter.
absl::StatusOr<std::unique_ptr<EnergyMeter>> CreateNvmlEnergyMeter(const NvmlMeterOptions& options,
                                                                   const Clock& clock);

struct RaplMeterOptions {
  std::string powercap_root = "/sys/class/powercap";  // tests pass a fake sysfs tree
  // When > 0, a background thread reads the counters at this period, so a counter cannot wrap
  // more than once between two reads of an idle engine.
  double poll_interval_s = 10.0;
};

// Meters the top-level "package-N" zones and their "dram" subzones (intel-rapl:N and
// intel-rapl:N:M); "psys", "core" and "uncore" are skipped because they overlap the package.
// Handles wrap-around at max_energy_range_uj. Errors when no readable zone exists (energy_uj
// is root-only on kernels patched for CVE-2020-8694).
absl::StatusOr<std::unique_ptr<EnergyMeter>> CreateRaplEnergyMeter(const RaplMeterOptions& options);

struct EnergyMeterOptions {
  // "auto": NVML when the backend is a GPU, then RAPL, then none. "nvml", "rapl", "none":
  // exactly that (an explicit nvml/rapl that cannot start is an error). "static": the
  // operator's watts, labelled estimated.
  std::string mode = "auto";
  bool gpu_backend = false;
  double static_watts = 0.0;  // required (> 0) for mode "static"
  NvmlMeterOptions nvml;
  RaplMeterOptions rapl;
};

// Picks and starts a meter. In "auto" mode this never fails: unavailable meters are logged
// (spdlog info) and skipped, ending at NoEnergyMeter.
absl::StatusOr<std::unique_ptr<EnergyMeter>> CreateEnergyMeter(const EnergyMeterOptions& options,
                                                               const Clock& clock);

}  // namespace tokenmill::metrics
