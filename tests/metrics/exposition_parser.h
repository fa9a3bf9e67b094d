// Test helper: a strict parser of the Prometheus text exposition format 0.0.4, used to read
// back what MetricRegistry renders (and to check it would satisfy a real scraper).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenmill::metrics::testing {

struct Sample {
  std::string name;  // full sample name, e.g. "x_bucket"
  std::map<std::string, std::string> labels;
  double value = 0.0;
};

struct ParsedFamily {
  std::string name;
  std::string help;
  std::string type;  // counter, gauge, histogram
  std::vector<Sample> samples;
};

// Families by name. Errors on: a sample before its TYPE line or of another family, duplicate
// HELP/TYPE, bad escapes, unparsable values, histogram buckets that are not cumulative, a
// missing +Inf bucket, or _count != the +Inf bucket.
absl::StatusOr<std::map<std::string, ParsedFamily>> ParseExposition(absl::string_view text);

// Value of the sample `name` whose labels include all of `labels`; fails the test if absent.
double SampleValue(const std::map<std::string, ParsedFamily>& families, const std::string& family,
                   const std::string& name, const std::map<std::string, std::string>& labels);
// Whether such a sample exists.
bool HasSample(const std::map<std::string, ParsedFamily>& families, const std::string& family,
               const std::string& name, const std::map<std::string, std::string>& labels);

}  // namespace tokenmill::metrics::testing
