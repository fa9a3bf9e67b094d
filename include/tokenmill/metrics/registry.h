// Prometheus-style metrics: counters, gauges and histograms with labels, collected in a
// MetricRegistry and rendered in the text exposition format 0.0.4.
//
// Hot path: look a child up once (MetricFamily::WithLabels, takes a mutex) and keep the
// reference; Counter/Gauge/Histogram updates are then lock-free atomics. Children are never
// removed, so a reference stays valid for the registry's lifetime.
//
// Cardinality: a label may be bound to a LabelValueCap, which lets the first N distinct values
// through and folds every later value into "other" (e.g. per-tenant labels).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace tokenmill::metrics {

// Monotonic counter. Thread-safe, lock-free.
class Counter {
 public:
  // Requires: delta >= 0 (counters never go down; a negative delta is a bug, TM_CHECK).
  void Increment(double delta = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Value that goes up and down. Thread-safe, lock-free.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Consistent view of a histogram: `cumulative_counts[i]` counts observations <= bounds[i];
// the last entry (one past bounds) is the +Inf bucket and equals `count`.
struct HistogramSnapshot {
  std::vector<double> bounds;
  std::vector<uint64_t> cumulative_counts;
  uint64_t count = 0;
  double sum = 0.0;
};

// Fixed-bucket histogram. Thread-safe, lock-free; Observe is a binary search plus two atomic
// adds. `_count` is derived from the buckets when read, so it always equals the +Inf bucket.
class Histogram {
 public:
  // Requires: `bounds` strictly increasing and finite (checked by the registry).
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  HistogramSnapshot Snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (last is +Inf)
  std::atomic<double> sum_{0.0};
};

// Bounds the distinct values one label may take. The first `max_values` distinct values pass
// through; later new values become `overflow_value`. Thread-safe. One cap may be shared by
// several families so they agree on which values (e.g. tenants) are tracked.
class LabelValueCap {
 public:
  explicit LabelValueCap(int max_values, std::string overflow_value = "other");
  // Returns `value` when it is tracked (or becomes tracked now), else the overflow value.
  std::string Canonicalize(absl::string_view value);
  int num_tracked() const;
  int max_values() const { return max_values_; }

 private:
  const int max_values_;
  const std::string overflow_value_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> tracked_ ABSL_GUARDED_BY(mu_);
};

enum class MetricType { kCounter, kGauge, kHistogram };

struct LabelSpec {
  std::string name;                    // [a-zA-Z_][a-zA-Z0-9_]*, not "le", not "__*"
  std::shared_ptr<LabelValueCap> cap;  // optional; null = unbounded
};

struct MetricSpec {
  std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*, e.g. "tokenmill:num_requests_running"
  std::string help;
  std::vector<LabelSpec> labels;
};

// Type-erased family interface used by the renderer.
class MetricFamilyBase {
 public:
  virtual ~MetricFamilyBase() = default;
  virtual MetricType type() const = 0;
  const MetricSpec& spec() const { return spec_; }
  // Appends this family in exposition format 0.0.4. Thread-safe.
  virtual void Render(std::string& out) const = 0;

 protected:
  explicit MetricFamilyBase(MetricSpec spec) : spec_(std::move(spec)) {}
  const MetricSpec spec_;
};

// All children of one metric name, keyed by label values (in the order of spec().labels).
template <typename T>
class MetricFamily final : public MetricFamilyBase {
 public:
  MetricFamily(MetricSpec spec, MetricType type, std::vector<double> bounds = {});
  MetricType type() const override { return type_; }

  // Returns the child for these label values, creating it on first use. Capped labels are
  // canonicalised first. Requires: values.size() == spec().labels.size(). Thread-safe.
  T& WithLabels(const std::vector<std::string>& values);
  T& WithLabels(std::initializer_list<absl::string_view> values);
  // The child of a family without labels.
  T& Get() { return WithLabels(std::vector<std::string>{}); }

  void Render(std::string& out) const override;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const MetricType type_;
  const std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

extern template class MetricFamily<Counter>;
extern template class MetricFamily<Gauge>;
extern template class MetricFamily<Histogram>;
using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

// Owns metric families and renders them. Thread-safe: registration, updates, hooks and
// rendering may happen concurrently from any thread.
class MetricRegistry {
 public:
  MetricRegistry() = default;
  MetricRegistry(const MetricRegistry&) = delete;
  MetricRegistry& operator=(const MetricRegistry&) = delete;

  // Get-or-add: registering the same name again with the same type, labels and buckets returns
  // the existing family (so several engines can share one registry). A name that is invalid or
  // already registered with a different shape is a programming error (TM_CHECK).
  CounterFamily& AddCounter(MetricSpec spec);
  GaugeFamily& AddGauge(MetricSpec spec);
  // Requires: `bounds` non-empty, finite, strictly increasing (+Inf is implicit).
  HistogramFamily& AddHistogram(MetricSpec spec, std::vector<double> bounds);

  bool Contains(absl::string_view name) const;

  // Hooks run at the start of every RenderText(), e.g. to refresh gauges sampled at scrape
  // time (uptime, GPU power). Returns an id for RemoveCollectHook. Hooks run under the hook
  // lock: they must not add or remove hooks.
  int AddCollectHook(std::function<void()> hook);
  void RemoveCollectHook(int id);

  // Runs the collect hooks, then renders every family in registration order, children sorted
  // by label values. Content-Type: kPrometheusContentType.
  std::string RenderText() const;

 private:
  MetricFamilyBase& AddFamily(MetricSpec spec, MetricType type, std::vector<double> bounds);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<MetricFamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex hooks_mu_;
  std::map<int, std::function<void()>> hooks_ ABSL_GUARDED_BY(hooks_mu_);
  int next_hook_id_ ABSL_GUARDED_BY(hooks_mu_) = 0;
};

inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Name checks of the Prometheus data model.
bool IsValidMetricName(absl::string_view name);
bool IsValidLabelName(absl::string_view name);

// Formatting pieces of the exposition format, exposed for the API layer and tests.
std::string FormatPrometheusValue(double v);            // "1", "0.25", "+Inf", "-Inf", "NaN"
std::string EscapeLabelValue(absl::string_view value);  // \\, \", \n
std::string EscapeHelp(absl::string_view help);         // \\, \n

// Bucket sets. The latency sets are vLLM's, so dashboards built for vLLM read ours.
std::vector<double> TtftBuckets();            // time_to_first_token_seconds
std::vector<double> InterTokenBuckets();      // inter_token_latency / time_per_output_token
std::vector<double> RequestLatencyBuckets();  // e2e, queue time
// 1, 2, 5, 10, 20, 50, ... up to and including the first value >= max_value (vLLM's 1-2-5).
std::vector<double> OneTwoFiveBuckets(double max_value);
// `count` buckets start, start*factor, ...
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace tokenmill::metrics
