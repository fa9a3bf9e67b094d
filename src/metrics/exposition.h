// Internal: renders one child of a family in the Prometheus text format 0.0.4.
#pragma once

#include <string>
#include <vector>

#include "tokenmill/metrics/registry.h"

namespace tokenmill::metrics::internal {

// Appends "# HELP" and "# TYPE" lines.
void RenderHeader(const MetricSpec& spec, MetricType type, std::string& out);

// `values` are the child's label values in spec order.
void RenderChild(const MetricSpec& spec, const std::vector<std::string>& values, const Counter& c,
                 std::string& out);
void RenderChild(const MetricSpec& spec, const std::vector<std::string>& values, const Gauge& g,
                 std::string& out);
void RenderChild(const MetricSpec& spec, const std::vector<std::string>& values, const Histogram& h,
                 std::string& out);

}  // namespace tokenmill::metrics::internal
