#include "exposition.h"

#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tokenmill::metrics {

std::string FormatPrometheusValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Shortest text that parses back to the same double (Go's FormatFloat(v, 'g', -1, 64)
  // spirit): bucket bounds print as written ("0.005", "2560"), counters as integers.
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, end);
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace internal {
namespace {

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"}` plus an optional extra pair (the histogram's "le"); "" when no labels.
std::string LabelBlock(const MetricSpec& spec, const std::vector<std::string>& values,
                       absl::string_view extra_name = {}, absl::string_view extra_value = {}) {
  if (values.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, spec.labels[i].name, "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    if (!values.empty()) out += ',';
    absl::StrAppend(&out, extra_name, "=\"", extra_value, "\"");
  }
  out += '}';
  return out;
}

void RenderSample(absl::string_view name, const std::string& labels, double value,
                  std::string& out) {
  absl::StrAppend(&out, name, labels, " ", FormatPrometheusValue(value), "\n");
}

}  // namespace

void RenderHeader(const MetricSpec& spec, MetricType type, std::string& out) {
  absl::StrAppend(&out, "# HELP ", spec.name, " ", EscapeHelp(spec.help), "\n");
  absl::StrAppend(&out, "# TYPE ", spec.name, " ", TypeName(type), "\n");
}

void RenderChild(const MetricSpec& spec, const std::vector<std::string>& values, const Counter& c,
                 std::string& out) {
  RenderSample(spec.name, LabelBlock(spec, values), c.value(), out);
}

void RenderChild(const MetricSpec& spec, const std::vector<std::string>& values, const Gauge& g,
                 std::string& out) {
  RenderSample(spec.name, LabelBlock(spec, values), g.value(), out);
}

void RenderChild(const MetricSpec& spec, const std::vector<std::string>& values, const Histogram& h,
                 std::string& out) {
  const HistogramSnapshot s = h.Snapshot();
  const std::string bucket_name = absl::StrCat(spec.name, "_bucket");
  for (size_t i = 0; i <= s.bounds.size(); ++i) {
    const std::string le = i < s.bounds.size() ? FormatPrometheusValue(s.bounds[i]) : "+Inf";
    RenderSample(bucket_name, LabelBlock(spec, values, "le", le),
                 static_cast<double>(s.cumulative_counts[i]), out);
  }
  const std::string labels = LabelBlock(spec, values);
  RenderSample(absl::StrCat(spec.name, "_sum"), labels, s.sum, out);
  RenderSample(absl::StrCat(spec.name, "_count"), labels, static_cast<double>(s.count), out);
}

}  // namespace internal
}  // namespace tokenmill::metrics
