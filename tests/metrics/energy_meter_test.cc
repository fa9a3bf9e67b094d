#include "tokenmill/metrics/energy_meter.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"

namespace tokenmill::metrics {
namespace {

namespace fs = std::filesystem;

TEST(EnergyMeterTest, NoneMeterNeverInventsANumber) {
  NoEnergyMeter meter;
  EXPECT_EQ(meter.source(), EnergySource::kNone);
  EXPECT_EQ(meter.ReadEnergyMicrojoules(), std::nullopt);
  EXPECT_TRUE(meter.ReadDeviceStats().empty());
}

TEST(EnergyMeterTest, StaticMeterIsWattsTimesTimeAndEstimated) {
  FakeClock clock;
  StaticEnergyMeter meter(250.0, clock);
  EXPECT_EQ(meter.source(), EnergySource::kEstimated);
  EXPECT_EQ(meter.ReadEnergyMicrojoules(), 0);
  clock.Advance(10.0);
  EXPECT_EQ(meter.ReadEnergyMicrojoules(), 2500000000);  // 2500 J
  EXPECT_NE(meter.Describe().find("estimated"), std::string::npos);
}

TEST(EnergyMeterTest, SourceNamesRoundTrip) {
  for (EnergySource s :
       {EnergySource::kNone, EnergySource::kNvml, EnergySource::kRapl, EnergySource::kEstimated}) {
    EXPECT_EQ(ParseEnergySource(EnergySourceName(s)).value(), s);
  }
  EXPECT_FALSE(ParseEnergySource("guess").ok());
}

TEST(EnergyMeterTest, AutoFallsBackToNoneWhenNothingMeasures) {
  FakeClock clock;
  EnergyMeterOptions options;
  options.gpu_backend = true;
  options.nvml.library = "libnvidia-ml-does-not-exist.so.1";
  options.rapl.powercap_root = "/nonexistent/powercap";
  auto meter = CreateEnergyMeter(options, clock);
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), EnergySource::kNone);
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), std::nullopt);
}

TEST(EnergyMeterTest, ExplicitModesFailCleanly) {
  FakeClock clock;
  EnergyMeterOptions options;
  options.nvml.library = "libnvidia-ml-does-not-exist.so.1";
  options.rapl.powercap_root = "/nonexistent/powercap";
  options.mode = "nvml";
  auto nvml = CreateEnergyMeter(options, clock);
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(nvml.status().message().find("libnvidia-ml-does-not-exist"), std::string::npos);
  options.mode = "rapl";
  EXPECT_EQ(CreateEnergyMeter(options, clock).status().code(), absl::StatusCode::kUnavailable);
  options.mode = "static";
  EXPECT_EQ(CreateEnergyMeter(options, clock).status().code(), absl::StatusCode::kInvalidArgument);
  options.static_watts = 400;
  auto estimated = CreateEnergyMeter(options, clock);
  ASSERT_TRUE(estimated.ok());
  EXPECT_EQ((*estimated)->source(), EnergySource::kEstimated);
  options.mode = "psychic";
  EXPECT_NE(CreateEnergyMeter(options, clock).status().message().find("energy.mode"),
            std::string::npos);
}

// A fake /sys/class/powercap tree.
class RaplTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("powercap-" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::remove_all(root_);
    fs::create_directories(root_ / "intel-rapl");  // the control type itself: not a zone
  }
  void TearDown() override { fs::remove_all(root_); }

  void Zone(const std::string& dir, const std::string& name, uint64_t energy, uint64_t max) {
    fs::create_directories(root_ / dir);
    Write(dir + "/name", name);
    Write(dir + "/energy_uj", std::to_string(energy));
    Write(dir + "/max_energy_range_uj", std::to_string(max));
  }
  // Atomic replace, as sysfs reads never see a half-written value.
  void Write(const std::string& rel, const std::string& text) {
    const fs::path tmp = root_ / (rel + ".tmp");
    std::ofstream(tmp) << text << "\n";
    fs::rename(tmp, root_ / rel);
  }
  RaplMeterOptions Options() const {
    RaplMeterOptions o;
    o.powercap_root = root_.string();
    o.poll_interval_s = 0;
    return o;
  }

  fs::path root_;
};

TEST_F(RaplTest, SumsPackagesAndDramButNotOverlappingZones) {
  Zone("intel-rapl:0", "package-0", 1000, 1000000);
  Zone("intel-rapl:0:0", "core", 500, 1000000);
  Zone("intel-rapl:0:1", "dram", 2000, 1000000);
  Zone("intel-rapl:1", "package-1", 3000, 1000000);
  Zone("intel-rapl:2", "psys", 9000, 1000000);
  auto meter = CreateRaplEnergyMeter(Options());
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), EnergySource::kRapl);
  EXPECT_EQ((*meter)->Describe(), "rapl: package-0, dram, package-1");
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 0);
  Write("intel-rapl:0/energy_uj", "1100");     // +100
  Write("intel-rapl:0:0/energy_uj", "99999");  // core: ignored
  Write("intel-rapl:0:1/energy_uj", "2020");   // +20
  Write("intel-rapl:1/energy_uj", "3003");     // +3
  Write("intel-rapl:2/energy_uj", "99999");    // psys: ignored
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 123);
}

TEST_F(RaplTest, HandlesWrapAround) {
  Zone("intel-rapl:0", "package-0", 900, 999);  // counter runs modulo 1000
  auto meter = CreateRaplEnergyMeter(Options());
  ASSERT_TRUE(meter.ok()) << meter.status();
  Write("intel-rapl:0/energy_uj", "100");  // 900 -> 999 -> 0 -> 100: 200 uJ
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 200);
  Write("intel-rapl:0/energy_uj", "150");
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 250);
  Write("intel-rapl:0/energy_uj", "150");
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 250);  // no change, no wrap
}

TEST_F(RaplTest, UnreadableCountersAreErrorsOrUnknownNotZero) {
  Zone("intel-rapl:0", "package-0", 10, 1000);
  fs::remove(root_ / "intel-rapl:0/energy_uj");
  auto missing = CreateRaplEnergyMeter(Options());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(missing.status().message().find("energy_uj"), std::string::npos);

  Write("intel-rapl:0/energy_uj", "10");
  auto meter = CreateRaplEnergyMeter(Options());
  ASSERT_TRUE(meter.ok());
  fs::remove(root_ / "intel-rapl:0/energy_uj");  // e.g. the module was unloaded
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), std::nullopt);
  Write("intel-rapl:0/energy_uj", "40");
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 30);  // nothing lost across the failed read
}

TEST_F(RaplTest, NoPackageZoneIsAnError) {
  Zone("intel-rapl:2", "psys", 9000, 1000000);
  EXPECT_EQ(CreateRaplEnergyMeter(Options()).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(RaplTest, PollerCatchesWrapsWhileIdle) {
  Zone("intel-rapl:0", "package-0", 0, 999);
  RaplMeterOptions options = Options();
  options.poll_interval_s = 0.001;
  auto meter = CreateRaplEnergyMeter(options);
  ASSERT_TRUE(meter.ok());
  // Two wraps' worth of energy, each step seen by the poller, with no read from us between.
  for (int value : {600, 200, 800, 400}) {
    Write("intel-rapl:0/energy_uj", std::to_string(value));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ((*meter)->ReadEnergyMicrojoules(), 600 + 600 + 600 + 600);
}

}  // namespace
}  // namespace tokenmill::metrics
