// A stand-in for libnvidia-ml.so.1, built as a shared library so the NVML meter's dlopen path
// runs for real on machines without a GPU. The test steers it through fake_nvml_* functions
// (resolved with dlsym on the same handle, so both see one copy of the state).
#include <atomic>
#include <cstdint>
#include <cstdio>

namespace {

constexpr int kMaxGpus = 8;
constexpr int kSuccess = 0;
constexpr int kInvalidArgument = 2;
constexpr int kNotSupported = 3;
constexpr int kUninitialized = 1;

struct Utilization {
  unsigned int gpu;
  unsigned int memory;
};

int g_init_result = kSuccess;
int g_num_inits = 0;
unsigned int g_count = 0;
// The readings are atomics: the test sets them while the meter's sampler thread reads them
// (a data race on plain ints, found by TSan).
std::atomic<bool> g_energy_supported = true;
std::atomic<bool> g_power_fails = false;
std::atomic<unsigned long long> g_energy_mj[kMaxGpus] = {};
std::atomic<unsigned int> g_power_mw[kMaxGpus] = {};
std::atomic<unsigned int> g_util[kMaxGpus] = {};

// Handles are 1-based indices disguised as pointers.
int IndexOf(void* handle) { return static_cast<int>(reinterpret_cast<uintptr_t>(handle)) - 1; }

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int nvmlInit_v2() {
  if (g_init_result == kSuccess) ++g_num_inits;
  return g_init_result;
}

__attribute__((visibility("default"))) int nvmlShutdown() {
  if (g_num_inits == 0) return kUninitialized;
  --g_num_inits;
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetCount_v2(unsigned int* count) {
  *count = g_count;
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                                                         void** device) {
  if (index >= g_count) return kInvalidArgument;
  *device = reinterpret_cast<void*>(static_cast<uintptr_t>(index) + 1);
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetTotalEnergyConsumption(
    void* device, unsigned long long* mj) {
  if (!g_energy_supported) return kNotSupported;
  *mj = g_energy_mj[IndexOf(device)];
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetPowerUsage(void* device, unsigned int* mw) {
  if (g_power_fails) return kNotSupported;
  *mw = g_power_mw[IndexOf(device)];
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetUtilizationRates(void* device,
                                                                         Utilization* u) {
  u->gpu = g_util[IndexOf(device)];
  u->memory = 0;
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetName(void* device, char* name,
                                                             unsigned int length) {
  std::snprintf(name, length, "Fake GPU %d", IndexOf(device));
  return kSuccess;
}

__attribute__((visibility("default"))) const char* nvmlErrorString(int result) {
  return result == kNotSupported ? "Not Supported" : "Fake NVML error";
}

// --- test controls ---
__attribute__((visibility("default"))) void fake_nvml_reset(unsigned int count,
                                                            int energy_supported, int init_result) {
  g_count = count;
  g_energy_supported = energy_supported != 0;
  g_init_result = init_result;
  g_power_fails = false;
  for (int i = 0; i < kMaxGpus; ++i) g_energy_mj[i] = g_power_mw[i] = g_util[i] = 0;
}

__attribute__((visibility("default"))) void fake_nvml_set(unsigned int index,
                                                          unsigned long long energy_mj,
                                                          unsigned int power_mw,
                                                          unsigned int util_percent) {
  g_energy_mj[index] = energy_mj;
  g_power_mw[index] = power_mw;
  g_util[index] = util_percent;
}

__attribute__((visibility("default"))) void fake_nvml_set_power_fails(int fails) {
  g_power_fails = fails != 0;
}

__attribute__((visibility("default"))) int fake_nvml_num_inits() { return g_num_inits; }

}  // extern "C"
