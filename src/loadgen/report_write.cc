// Writing the report directory: report.json, report.md, sweep.dat and the gnuplot PNGs.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "tokenmill/core/status.h"
#include "tokenmill/loadgen/report.h"

namespace tokenmill::loadgen {
namespace fs = std::filesystem;
namespace {

constexpr char kDataFile[] = "sweep.dat";
constexpr char kScriptFile[] = "plots.gp";
constexpr char kLatencyPlot[] = "throughput_latency.png";
constexpr char kEnergyPlot[] = "tokens_per_joule.png";

absl::Status WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

std::string Cell(const std::optional<double>& v, double scale = 1.0) {
  return v.has_value() ? absl::StrFormat("%.9g", *v * scale) : "NaN";
}

// One row per point; latencies in ms. Columns are named in the header comment.
std::string SweepData(const BenchReport& r) {
  std::string out =
      "# load req_per_s output_tok_per_s ttft_p50_ms ttft_p99_ms tpot_p50_ms tpot_p99_ms "
      "e2e_p50_s e2e_p99_s tokens_per_joule output_tokens_per_joule\n";
  for (const PointReport& p : r.points) {
    const PointMetrics& m = p.metrics;
    absl::StrAppend(&out,
                    absl::StrFormat("%.9g %.9g %.9g ", p.load.value, m.request_throughput_req_s,
                                    m.output_throughput_tok_s),
                    Cell(m.ttft_s.p50, 1e3), " ", Cell(m.ttft_s.p99, 1e3), " ",
                    Cell(m.tpot_s.p50, 1e3), " ", Cell(m.tpot_s.p99, 1e3), " ", Cell(m.e2e_s.p50),
                    " ", Cell(m.e2e_s.p99), " ", Cell(m.tokens_per_joule), " ",
                    Cell(m.output_tokens_per_joule), "\n");
  }
  return out;
}

// Text safe inside a gnuplot double-quoted string.
std::string Quote(const std::string& s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
}

std::string PlotScript(const BenchReport& r) {
  const bool has_energy = [&] {
    for (const PointReport& p : r.points) {
      if (p.metrics.tokens_per_joule.has_value()) return true;
    }
    return false;
  }();
  const bool by_rate = !r.points.empty() && r.points[0].load.mode == LoadMode::kRate;
  // Sweeps like 1,4,16,64 read better on a log axis.
  double min_load = 0, max_load = 0;
  for (const PointReport& p : r.points) {
    min_load = min_load == 0 ? p.load.value : std::min(min_load, p.load.value);
    max_load = std::max(max_load, p.load.value);
  }
  const bool wide_load_range = min_load > 0 && max_load / min_load >= 8;
  const std::string load_label = by_rate ? "request rate (req/s)" : "concurrency";
  auto cfg = [&](const char* key) {
    return r.config.contains(key) && r.config[key].is_string() ? r.config[key].get<std::string>()
                                                               : std::string();
  };
  const std::string model =
      cfg("served_model_name").empty() ? cfg("model") : cfg("served_model_name");
  const std::string title =
      absl::StrCat("tokenmill bench: ", cfg("target"), ", ", model, ", ", cfg("workload"));
  std::string s = absl::StrCat(
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
      "  set terminal pngcairo size 1200,500 font ',10'\n"
      "} else {\n"
      "  set terminal png size 1200,500\n"
      "}\n"
      "set datafile missing 'NaN'\nset grid\nset key top left\nset yrange [0:*]\n",
      // Room around the points so the labels and flat lines stay inside the frame.
      "set offsets graph 0.08, graph 0.08, graph 0.12, 0\n", "set output '", kLatencyPlot, "'\n",
      "set multiplot layout 1,2 title ", Quote(title), "\n",
      "set xlabel 'output throughput (tokens/s)'\nset ylabel 'time to first token (ms)'\n",
      "plot '", kDataFile, "' using 3:4 with linespoints pt 7 title 'TTFT p50', \\\n",
      "     '' using 3:5 with linespoints pt 5 title 'TTFT p99', \\\n",
      "     '' using 3:4:(sprintf('", by_rate ? "%g/s" : "c=%g", "', $1)) with labels ",
      "offset 0,1 notitle\n", "set ylabel 'time per output token (ms)'\n", "plot '", kDataFile,
      "' using 3:6 with linespoints pt 7 title 'TPOT p50', \\\n",
      "     '' using 3:7 with linespoints pt 5 title 'TPOT p99', \\\n",
      "     '' using 3:6:(sprintf('", by_rate ? "%g/s" : "c=%g", "', $1)) with labels ",
      "offset 0,1 notitle\n", "unset multiplot\n");
  if (wide_load_range) absl::StrAppend(&s, "set logscale x 2\n");
  absl::StrAppend(&s, "set output '", kEnergyPlot, "'\n", "set title ", Quote(title),
                  "\nset xlabel '", load_label, "'\n", "set ylabel 'tokens per joule'\n");
  if (has_energy) {
    absl::StrAppend(&s, "plot '", kDataFile,
                    "' using 1:10 with linespoints pt 7 title 'tokens (prompt + output) / J', "
                    "'' using 1:11 with linespoints pt 5 title 'output tokens / J'\n");
  } else {
    absl::StrAppend(&s,
                    "unset logscale x\nunset xtics\nunset ytics\n"
                    "set label 'energy not reported by the target: tokens per joule unknown' "
                    "at graph 0.5,0.5 center\nset xrange [0:1]\nset yrange [0:1]\n"
                    "plot 1/0 notitle\n");
  }
  return s;
}

// Runs gnuplot in `dir`; "" on success, else why not.
std::string RunGnuplot(const std::string& gnuplot, const fs::path& dir) {
  auto sh_quote = [](const std::string& s) {
    return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
  };
  const std::string cmd = absl::StrCat("cd ", sh_quote(dir.string()), " && ", sh_quote(gnuplot),
                                       " ", kScriptFile, " 2>&1");
  std::FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "cannot start a shell for gnuplot";
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) output.append(buf, n);
  const int status = pclose(p);
  if (status == 0) return "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return absl::StrCat(gnuplot, " not found (install gnuplot-nox)");
  }
  return absl::StrCat(gnuplot, " failed: ", output.substr(0, 500));
}

}  // namespace

absl::StatusOr<WrittenReport> WriteReport(const BenchReport& report, const std::string& dir,
                                          const std::string& gnuplot) {
  WrittenReport written;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("--out ", dir, ": ", ec.message()));
  const fs::path d(dir);
  TM_RETURN_IF_ERROR(WriteFile(d / "report.json", ReportJson(report).dump(2) + "\n"));
  written.files.push_back((d / "report.json").string());
  TM_RETURN_IF_ERROR(WriteFile(d / kDataFile, SweepData(report)));
  written.files.push_back((d / kDataFile).string());
  TM_RETURN_IF_ERROR(WriteFile(d / kScriptFile, PlotScript(report)));
  written.files.push_back((d / kScriptFile).string());
  std::vector<std::string> plots;
  if (report.points.empty()) {
    written.warnings.push_back("no load point ran: no plots");
  } else if (std::string why = RunGnuplot(gnuplot, d); !why.empty()) {
    written.warnings.push_back(absl::StrCat("plots skipped: ", why));
  } else {
    for (const char* p : {kLatencyPlot, kEnergyPlot}) {
      if (fs::exists(d / p)) {
        plots.push_back(p);
        written.files.push_back((d / p).string());
      }
    }
  }
  TM_RETURN_IF_ERROR(WriteFile(d / "report.md", ReportMarkdown(report, plots)));
  written.files.push_back((d / "report.md").string());
  return written;
}

}  // namespace tokenmill::loadgen
