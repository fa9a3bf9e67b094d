// Linux RAPL through the powercap sysfs tree. Counters are cumulative microjoules that wrap at
// max_energy_range_uj; we keep a 64-bit running total per zone.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "periodic_thread.h"
#include "tokenmill/core/status.h"
#include "tokenmill/metrics/energy_meter.h"

namespace tokenmill::metrics {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadSmallFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    const std::string message =
        absl::StrCat("cannot read ", path.string(), ": ", std::strerror(err));
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    if (err == ENOENT) return absl::NotFoundError(message);
    return absl::UnavailableError(message);
  }
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

absl::StatusOr<uint64_t> ReadCounter(const fs::path& path) {
  TM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  uint64_t v = 0;
  if (!absl::SimpleAtoi(text, &v)) {
    return absl::DataLossError(absl::StrCat(path.string(), ": not a counter: '", text, "'"));
  }
  return v;
}

struct Zone {
  std::string name;  // "package-0", "dram"
  fs::path energy_path;
  uint64_t max_range_uj = 0;
  uint64_t last_uj = 0;
  int64_t accumulated_uj = 0;
};

// Zone directory names: "intel-rapl:0" (package level) or "intel-rapl:0:1" (subzone).
// Returns the number of ':'-separated indices, or 0 when the name is not a RAPL zone.
int ZoneDepth(const std::string& dir_name) {
  std::vector<std::string> parts = absl::StrSplit(dir_name, ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0] != "intel-rapl") return 0;
  for (size_t i = 1; i < parts.size(); ++i) {
    int v = 0;
    if (!absl::SimpleAtoi(parts[i], &v)) return 0;
  }
  return static_cast<int>(parts.size()) - 1;
}

absl::StatusOr<Zone> OpenZone(const fs::path& dir, const std::string& name) {
  Zone z;
  z.name = name;
  z.energy_path = dir / "energy_uj";
  TM_ASSIGN_OR_RETURN(z.max_range_uj, ReadCounter(dir / "max_energy_range_uj"));
  TM_ASSIGN_OR_RETURN(z.last_uj, ReadCounter(z.energy_path));
  return z;
}

class RaplEnergyMeter final : public EnergyMeter {
 public:
  RaplEnergyMeter(std::vector<Zone> zones, double poll_s) : zones_(std::move(zones)) {
    if (poll_s > 0) {
      poller_ = std::make_unique<internal::PeriodicThread>(poll_s, [this] {
        absl::MutexLock lock(&mu_);
        UpdateLocked();
      });
    }
  }
  ~RaplEnergyMeter() override { poller_.reset(); }

  EnergySource source() const override { return EnergySource::kRapl; }

  std::optional<int64_t> ReadEnergyMicrojoules() override {
    absl::MutexLock lock(&mu_);
    if (!UpdateLocked()) return std::nullopt;
    int64_t total = 0;
    for (const Zone& z : zones_) total += z.accumulated_uj;
    return total;
  }

  std::string Describe() const override {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> names;
    for (const Zone& z : zones_) names.push_back(z.name);
    return absl::StrCat("rapl: ", absl::StrJoin(names, ", "));
  }

 private:
  bool UpdateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool ok = true;
    for (Zone& z : zones_) {
      auto raw = ReadCounter(z.energy_path);
      if (!raw.ok()) {
        ok = false;
        continue;
      }
      // The counter runs modulo max_energy_range_uj + 1; one wrap between reads is handled,
      // the poller keeps reads frequent enough that two cannot happen.
      const uint64_t delta =
          *raw >= z.last_uj ? *raw - z.last_uj : (z.max_range_uj - z.last_uj) + *raw + 1;
      z.accumulated_uj += static_cast<int64_t>(delta);
      z.last_uj = *raw;
    }
    return ok;
  }

  mutable absl::Mutex mu_;
  std::vector<Zone> zones_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<internal::PeriodicThread> poller_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EnergyMeter>> CreateRaplEnergyMeter(
    const RaplMeterOptions& options) {
  const fs::path root(options.powercap_root);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::UnavailableError(absl::StrCat(root.string(), ": no powercap sysfs"));
  }
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(root, ec)) dirs.push_back(entry.path());
  std::sort(dirs.begin(), dirs.end());  // package-0 before package-1, stable descriptions
  std::vector<Zone> zones;
  std::vector<std::string> errors;
  for (const fs::path& dir : dirs) {
    const int depth = ZoneDepth(dir.filename().string());
    if (depth == 0) continue;
    auto name = ReadSmallFile(dir / "name");
    if (!name.ok()) continue;
    const bool wanted =
        (depth == 1 && absl::StartsWith(*name, "package")) || (depth == 2 && *name == "dram");
    if (!wanted) continue;
    auto zone = OpenZone(dir, *name);
    if (!zone.ok()) {
      errors.push_back(std::string(zone.status().message()));
      continue;
    }
    zones.push_back(*std::move(zone));
  }
  if (zones.empty()) {
    return absl::UnavailableError(
        errors.empty() ? absl::StrCat(root.string(), ": no RAPL package zone")
                       : absl::StrCat("no readable RAPL zone (energy_uj is root-only on "
                                      "patched kernels): ",
                                      absl::StrJoin(errors, "; ")));
  }
  return std::unique_ptr<EnergyMeter>(
      std::make_unique<RaplEnergyMeter>(std::move(zones), options.poll_interval_s));
}

}  // namespace tokenmill::metrics
