// NVML through dlopen: the engine must start (and the binary must link) on machines without
// the NVIDIA driver, so nothing here includes nvml.h; the few ABI types are declared locally.
#include <dlfcn.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "periodic_thread.h"
#include "tokenmill/core/status.h"
#include "tokenmill/metrics/energy_meter.h"

namespace tokenmill::metrics {
namespace {

// Stable NVML ABI (nvml.h): opaque device handle, int return codes.
using NvmlReturn = int;
using NvmlDevice = struct NvmlDeviceOpaque*;
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};
constexpr NvmlReturn kNvmlSuccess = 0;

struct NvmlApi {
  void* handle = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*get_count)(unsigned int*) = nullptr;
  NvmlReturn (*get_handle)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*get_total_energy)(NvmlDevice, unsigned long long*) = nullptr;  // mJ
  NvmlReturn (*get_power)(NvmlDevice, unsigned int*) = nullptr;               // mW
  NvmlReturn (*get_utilization)(NvmlDevice, NvmlUtilization*) = nullptr;      // optional
  NvmlReturn (*get_name)(NvmlDevice, char*, unsigned int) = nullptr;          // optional
  const char* (*error_string)(NvmlReturn) = nullptr;                          // optional

  std::string Error(NvmlReturn r) const {
    return error_string != nullptr ? absl::StrCat(error_string(r), " (", r, ")")
                                   : absl::StrCat("NVML error ", r);
  }
};

template <typename Fn>
bool Resolve(void* handle, const char* symbol, Fn*& fn) {
  fn = reinterpret_cast<Fn*>(dlsym(handle, symbol));
  return fn != nullptr;
}

absl::StatusOr<NvmlApi> LoadNvml(const std::string& library) {
  NvmlApi api;
  api.handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (api.handle == nullptr) {
    const char* err = dlerror();
    return absl::UnavailableError(
        absl::StrCat("cannot load ", library, ": ", err != nullptr ? err : "dlopen failed"));
  }
  const bool ok =
      Resolve(api.handle, "nvmlInit_v2", api.init) &&
      Resolve(api.handle, "nvmlShutdown", api.shutdown) &&
      Resolve(api.handle, "nvmlDeviceGetCount_v2", api.get_count) &&
      Resolve(api.handle, "nvmlDeviceGetHandleByIndex_v2", api.get_handle) &&
      Resolve(api.handle, "nvmlDeviceGetTotalEnergyConsumption", api.get_total_energy) &&
      Resolve(api.handle, "nvmlDeviceGetPowerUsage", api.get_power);
  if (!ok) {
    dlclose(api.handle);
    return absl::UnavailableError(absl::StrCat(library, ": missing NVML symbols"));
  }
  Resolve(api.handle, "nvmlDeviceGetUtilizationRates", api.get_utilization);
  Resolve(api.handle, "nvmlDeviceGetName", api.get_name);
  Resolve(api.handle, "nvmlErrorString", api.error_string);
  return api;
}

struct Gpu {
  int index = 0;
  NvmlDevice device = nullptr;
  std::string name;
  bool has_energy_counter = false;
  // Counter mode: last raw counter (mJ). Power mode: last sample time (s) and power (W).
  unsigned long long last_mj = 0;
  double last_sample_s = 0.0;
  double last_watts = 0.0;
  int64_t accumulated_uj = 0;
};

class NvmlEnergyMeter final : public EnergyMeter {
 public:
  NvmlEnergyMeter(NvmlApi api, std::vector<Gpu> gpus, const Clock& clock, double sample_s)
      : api_(api), clock_(clock), gpus_(std::move(gpus)) {
    bool needs_sampler = false;
    for (const Gpu& g : gpus_) needs_sampler |= !g.has_energy_counter;
    if (needs_sampler && sample_s > 0) {
      sampler_ = std::make_unique<internal::PeriodicThread>(sample_s, [this] {
        absl::MutexLock lock(&mu_);
        UpdateLocked();
      });
    }
  }

  ~NvmlEnergyMeter() override {
    sampler_.reset();  // joins before the library goes away
    api_.shutdown();
    dlclose(api_.handle);
  }

  EnergySource source() const override { return EnergySource::kNvml; }

  std::optional<int64_t> ReadEnergyMicrojoules() override {
    absl::MutexLock lock(&mu_);
    if (!UpdateLocked()) return std::nullopt;
    int64_t total = 0;
    for (const Gpu& g : gpus_) total += g.accumulated_uj;
    return total;
  }

  std::vector<DeviceStats> ReadDeviceStats() override {
    absl::MutexLock lock(&mu_);
    std::vector<DeviceStats> out;
    for (const Gpu& g : gpus_) {
      DeviceStats s;
      s.index = g.index;
      s.name = g.name;
      unsigned int mw = 0;
      if (api_.get_power(g.device, &mw) == kNvmlSuccess) s.power_watts = mw / 1000.0;
      NvmlUtilization u{};
      if (api_.get_utilization != nullptr && api_.get_utilization(g.device, &u) == kNvmlSuccess) {
        s.utilization = u.gpu / 100.0;
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  std::string Describe() const override {
    absl::MutexLock lock(&mu_);
    int counters = 0;
    for (const Gpu& g : gpus_) counters += g.has_energy_counter ? 1 : 0;
    return absl::StrFormat(
        "nvml: %d GPU(s) (%s), %d with the total-energy counter, %d by "
        "integrating power samples",
        gpus_.size(), gpus_.empty() ? "" : gpus_[0].name, counters,
        static_cast<int>(gpus_.size()) - counters);
  }

 private:
  // Brings every GPU's accumulated energy up to now. False when a read failed; the GPUs that
  // did read keep their progress, so a transient failure loses nothing from the counter.
  bool UpdateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool ok = true;
    for (Gpu& g : gpus_) ok &= g.has_energy_counter ? UpdateCounter(g) : UpdatePower(g);
    return ok;
  }

  bool UpdateCounter(Gpu& g) {
    unsigned long long mj = 0;
    if (api_.get_total_energy(g.device, &mj) != kNvmlSuccess) return false;
    // The counter restarts only when the driver reloads; that interval is lost, not invented.
    if (mj >= g.last_mj) g.accumulated_uj += static_cast<int64_t>(mj - g.last_mj) * 1000;
    g.last_mj = mj;
    return true;
  }

  bool UpdatePower(Gpu& g) {
    unsigned int mw = 0;
    if (api_.get_power(g.device, &mw) != kNvmlSuccess) return false;
    const double now = clock_.NowSeconds();
    const double watts = mw / 1000.0;
    // Trapezoid between consecutive samples (sampler thread and reads interleave).
    const double dt = std::max(0.0, now - g.last_sample_s);
    g.accumulated_uj += std::llround(0.5 * (g.last_watts + watts) * dt * 1e6);
    g.last_sample_s = now;
    g.last_watts = watts;
    return true;
  }

  const NvmlApi api_;
  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::vector<Gpu> gpus_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<internal::PeriodicThread> sampler_;
};

absl::StatusOr<Gpu> OpenGpu(const NvmlApi& api, int index, const Clock& clock) {
  Gpu g;
  g.index = index;
  NvmlReturn r = api.get_handle(static_cast<unsigned int>(index), &g.device);
  if (r != kNvmlSuccess) {
    return absl::UnavailableError(absl::StrCat("NVML GPU ", index, ": ", api.Error(r)));
  }
  char name[96] = {};
  if (api.get_name != nullptr && api.get_name(g.device, name, sizeof(name)) == kNvmlSuccess) {
    g.name = name;
  }
  r = api.get_total_energy(g.device, &g.last_mj);
  if (r == kNvmlSuccess) {
    g.has_energy_counter = true;
    return g;
  }
  // Pre-Volta GPUs lack the counter: integrate board power instead.
  unsigned int mw = 0;
  const NvmlReturn rp = api.get_power(g.device, &mw);
  if (rp != kNvmlSuccess) {
    return absl::UnavailableError(absl::StrCat("NVML GPU ", index, ": no energy counter (",
                                               api.Error(r), ") and no power reading (",
                                               api.Error(rp), ")"));
  }
  g.last_watts = mw / 1000.0;
  g.last_sample_s = clock.NowSeconds();
  return g;
}

absl::StatusOr<std::vector<Gpu>> OpenGpus(const NvmlApi& api, const NvmlMeterOptions& options,
                                          const Clock& clock) {
  unsigned int count = 0;
  const NvmlReturn r = api.get_count(&count);
  if (r != kNvmlSuccess) {
    return absl::UnavailableError(absl::StrCat("nvmlDeviceGetCount_v2: ", api.Error(r)));
  }
  std::vector<int> indices = options.device_indices;
  if (indices.empty()) {
    for (unsigned int i = 0; i < count; ++i) indices.push_back(static_cast<int>(i));
  }
  if (indices.empty()) return absl::UnavailableError("NVML reports no GPU");
  std::vector<Gpu> gpus;
  for (int index : indices) {
    if (index < 0 || static_cast<unsigned int>(index) >= count) {
      return absl::InvalidArgumentError(absl::StrCat("energy.nvml.device_indices: GPU ", index,
                                                     " does not exist (NVML sees ", count, ")"));
    }
    TM_ASSIGN_OR_RETURN(Gpu g, OpenGpu(api, index, clock));
    gpus.push_back(std::move(g));
  }
  return gpus;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EnergyMeter>> CreateNvmlEnergyMeter(const NvmlMeterOptions& options,
                                                                   const Clock& clock) {
  TM_ASSIGN_OR_RETURN(NvmlApi api, LoadNvml(options.library));
  const NvmlReturn r = api.init();
  if (r != kNvmlSuccess) {
    const std::string err = api.Error(r);
    dlclose(api.handle);
    return absl::UnavailableError(absl::StrCat("nvmlInit_v2: ", err));
  }
  auto gpus = OpenGpus(api, options, clock);
  if (!gpus.ok()) {
    api.shutdown();
    dlclose(api.handle);
    return gpus.status();
  }
  return std::unique_ptr<EnergyMeter>(std::make_unique<NvmlEnergyMeter>(
      api, *std::move(gpus), clock, options.power_sample_interval_s));
}

}  // namespace tokenmill::metrics
