// The bench report: report.json (schema in docs/bench.md), report.md and gnuplot PNGs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tokenmill/loadgen/runner.h"
#include "tokenmill/loadgen/stats.h"

namespace tokenmill::loadgen {

inline constexpr int kReportSchemaVersion = 1;

struct MachineInfo {
  std::string hostname;
  std::string cpu;  // /proc/cpuinfo "model name"
  int num_cpus = 0;
  int64_t memory_bytes = 0;
  std::string os;                 // uname: sysname release machine
  std::vector<std::string> gpus;  // nvidia-smi name, driver, memory; empty without one
};
// Reads this machine's figures; what cannot be read stays empty.
MachineInfo DetectMachine();

// `git describe --always --dirty --abbrev=40` in `dir`, by default the source tree the
// binary was built from: the commit hash, "-dirty" when the tree had changes. "" when it is
// not a git checkout (or git is missing).
std::string DetectCommit(const std::string& dir = "");

struct PointReport {
  LoadPoint load;
  PointMetrics metrics;
  int64_t num_sessions = 0;
  int64_t num_truncated_sessions = 0;
};

struct BenchReport {
  nlohmann::ordered_json config;  // the run's settings, as the command resolved them
  uint64_t seed = 0;
  std::string commit;
  std::string date;  // RFC 3339 UTC, when the run started
  MachineInfo machine;
  int64_t warmup_requests = 0;
  int64_t warmup_errors = 0;
  std::vector<PointReport> points;  // in sweep order
};

// The point whose figures are repeated at the top level of report.json: the one with the
// highest output-token throughput (the only one without a sweep). -1 when there is none.
int SummaryPointIndex(const BenchReport& report);

nlohmann::ordered_json SummaryJson(const Summary& s);  // {"p50","p90","p99","mean"}
nlohmann::ordered_json PointJson(const PointReport& p);
nlohmann::ordered_json ReportJson(const BenchReport& report);
// One line of requests.jsonl (--save-requests): the request's place, lengths and times in
// seconds since `start_s` (the point's start), chunk gaps included; error code when it failed.
nlohmann::ordered_json RequestSampleJson(int point, const RequestSample& sample, double start_s);
std::string ReportMarkdown(const BenchReport& report, const std::vector<std::string>& plots);

struct WrittenReport {
  std::vector<std::string> files;     // paths written
  std::vector<std::string> warnings;  // e.g. gnuplot missing: plots skipped
};

// Creates `dir` when needed and writes report.json, report.md, sweep.dat and, when gnuplot
// is on PATH, throughput_latency.png and tokens_per_joule.png. Plots never fail the write:
// a missing or failing gnuplot becomes a warning. Errors: the directory or a report file
// cannot be written (naming the path).
absl::StatusOr<WrittenReport> WriteReport(const BenchReport& report, const std::string& dir,
                                          const std::string& gnuplot = "gnuplot");

}  // namespace tokenmill::loadgen
