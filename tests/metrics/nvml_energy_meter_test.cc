// Runs the NVML meter against tests/metrics/fake_nvml.cc loaded with dlopen, so the real
// loading, symbol lookup, init/shutdown and both energy paths are exercised without a GPU.
#include <dlfcn.h>

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tokenmill/metrics/energy_meter.h"

#ifndef TOKENMILL_FAKE_NVML_PATH
#error "TOKENMILL_FAKE_NVML_PATH must name the fake NVML library"
#endif

namespace tokenmill::metrics {
namespace {

class NvmlMeterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    handle_ = dlopen(TOKENMILL_FAKE_NVML_PATH, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle_, nullptr) << dlerror();
    reset_ = reinterpret_cast<void (*)(unsigned, int, int)>(dlsym(handle_, "fake_nvml_reset"));
    set_ = reinterpret_cast<void (*)(unsigned, unsigned long long, unsigned, unsigned)>(
        dlsym(handle_, "fake_nvml_set"));
    power_fails_ = reinterpret_cast<void (*)(int)>(dlsym(handle_, "fake_nvml_set_power_fails"));
    num_inits_ = reinterpret_cast<int (*)()>(dlsym(handle_, "fake_nvml_num_inits"));
    ASSERT_TRUE(reset_ && set_ && power_fails_ && num_inits_);
    reset_(2, /*energy_supported=*/1, /*init_result=*/0);
  }
  void TearDown() override {
    if (handle_ != nullptr) dlclose(handle_);
  }

  NvmlMeterOptions Options() const {
    NvmlMeterOptions o;
    o.library = TOKENMILL_FAKE_NVML_PATH;
    o.power_sample_interval_s = 0;  // the test drives sampling through reads
    return o;
  }

  void* handle_ = nullptr;
  void (*reset_)(unsigned, int, int) = nullptr;
  void (*set_)(unsigned, unsigned long long, unsigned, unsigned) = nullptr;
  void (*power_fails_)(int) = nullptr;
  int (*num_inits_)() = nullptr;
  FakeClock clock_;
};

TEST_F(NvmlMeterTest, MissingLibraryIsAnErrorNotACrash) {
  NvmlMeterOptions o = Options();
  o.library = "/nonexistent/libnvidia-ml.so.1";
  auto meter = CreateNvmlEnergyMeter(o, clock_);
  EXPECT_EQ(meter.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(NvmlMeterTest, ReadsTheTotalEnergyCounterOfEveryGpu) {
  set_(0, 1000000, 300000, 80);  // counters start anywhere: readings are deltas since creation
  set_(1, 5000000, 100000, 20);
  auto meter = CreateNvmlEnergyMeter(Options(), clock_);
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ(num_inits_(), 1);
  EXPECT_EQ((*meter)->source(), EnergySource::kNvml);
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 0);
  set_(0, 1000005, 300000, 80);  // +5 mJ
  set_(1, 5000007, 100000, 20);  // +7 mJ
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 12000);
  const std::vector<DeviceStats> stats = (*meter)->ReadDeviceStats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].name, "Fake GPU 0");
  EXPECT_DOUBLE_EQ(stats[0].utilization.value(), 0.8);
  EXPECT_DOUBLE_EQ(stats[1].power_watts.value(), 100.0);
  meter->reset();
  EXPECT_EQ(num_inits_(), 0);  // nvmlShutdown on destruction
}

TEST_F(NvmlMeterTest, MetersOnlyTheSelectedGpus) {
  NvmlMeterOptions o = Options();
  o.device_indices = {1};
  auto meter = CreateNvmlEnergyMeter(o, clock_);
  ASSERT_TRUE(meter.ok()) << meter.status();
  set_(0, 999, 0, 0);
  set_(1, 2, 0, 0);
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 2000);
  o.device_indices = {7};
  auto bad = CreateNvmlEnergyMeter(o, clock_);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("device_indices"), std::string::npos);
}

TEST_F(NvmlMeterTest, IntegratesPowerWhenTheCounterIsUnsupported) {
  reset_(1, /*energy_supported=*/0, 0);
  set_(0, 0, 100000, 0);  // 100 W
  auto meter = CreateNvmlEnergyMeter(Options(), clock_);
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_NE((*meter)->Describe().find("1 by integrating power"), std::string::npos);
  clock_.Advance(2.0);
  set_(0, 0, 200000, 0);  // 200 W: trapezoid over 2 s = 300 J
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 300000000);
  clock_.Advance(1.0);  // steady 200 W
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 500000000);
  power_fails_(1);
  clock_.Advance(1.0);
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), std::nullopt);  // unknown, not 0
  power_fails_(0);
  clock_.Advance(1.0);
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 900000000);  // the gap is integrated once back
}

TEST_F(NvmlMeterTest, BackgroundSamplerCoversIdleStretches) {
  reset_(1, 0, 0);
  set_(0, 0, 50000, 0);
  NvmlMeterOptions o = Options();
  o.power_sample_interval_s = 0.001;
  SystemClock clock;
  auto meter = CreateNvmlEnergyMeter(o, clock);
  ASSERT_TRUE(meter.ok()) << meter.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  set_(0, 0, 0, 0);  // the GPU went idle just before we read
  // 50 W for ~0.1 s = ~5 J. Without the sampler the trapezoid over the two reads would see
  // (50 + 0) / 2 W, about 2.5 J.
  const int64_t uj = (*meter)->ReadEnergyMicrojoules().value();
  EXPECT_GE(uj, 4000000);
  EXPECT_LT(uj, 50000000);
}

TEST_F(NvmlMeterTest, InitFailureAndNoGpuFallBackCleanly) {
  reset_(2, 1, /*init_result=*/9);  // NVML_ERROR_DRIVER_NOT_LOADED
  auto no_driver = CreateNvmlEnergyMeter(Options(), clock_);
  EXPECT_EQ(no_driver.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(no_driver.status().message().find("nvmlInit_v2"), std::string::npos);
  reset_(0, 1, 0);
  EXPECT_FALSE(CreateNvmlEnergyMeter(Options(), clock_).ok());
  EXPECT_EQ(num_inits_(), 0);  // shut down again after the failed start

  EnergyMeterOptions auto_options;
  auto_options.gpu_backend = true;
  auto_options.nvml = Options();
  auto_options.rapl.powercap_root = "/nonexistent";
  auto fallback = CreateEnergyMeter(auto_options, clock_);
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ((*fallback)->source(), EnergySource::kNone);
}

TEST_F(NvmlMeterTest, AutoPicksNvmlOnAGpuBackend) {
  EnergyMeterOptions o;
  o.gpu_backend = true;
  o.nvml = Options();
  auto meter = CreateEnergyMeter(o, clock_);
  ASSERT_TRUE(meter.ok());
  EXPECT_EQ((*meter)->source(), EnergySource::kNvml);
}

}  // namespace
}  // namespace tokenmill::metrics
