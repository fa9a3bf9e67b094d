#include "tokenmill/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "exposition.h"
#include "tokenmill/core/status.h"

namespace tokenmill::metrics {

void Counter::Increment(double delta) {
  TM_CHECK(delta >= 0.0, "counter increment must be >= 0, got ", delta);
  value_.fetch_add(delta, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // NaN would poison _sum forever and belongs to no bucket; it is always a caller bug upstream.
  if (std::isnan(v)) return;
  // Bucket i holds bounds[i-1] < v <= bounds[i]: Prometheus "le" is inclusive.
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot s;
  s.bounds = bounds_;
  s.cumulative_counts.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative_counts[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

LabelValueCap::LabelValueCap(int max_values, std::string overflow_value)
    : max_values_(max_values), overflow_value_(std::move(overflow_value)) {
  TM_CHECK(max_values >= 0, "label cap must be >= 0");
}

std::string LabelValueCap::Canonicalize(absl::string_view value) {
  absl::MutexLock lock(&mu_);
  if (tracked_.contains(value)) return std::string(value);
  if (static_cast<int>(tracked_.size()) < max_values_) {
    tracked_.insert(std::string(value));
    return std::string(value);
  }
  return overflow_value_;
}

int LabelValueCap::num_tracked() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tracked_.size());
}

namespace {

bool IsNameChar(char c, bool allow_colon, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (c == ':') return allow_colon;
  return !first && c >= '0' && c <= '9';
}

template <typename T>
std::unique_ptr<T> NewChild(const std::vector<double>& bounds) {
  if constexpr (std::is_same_v<T, Histogram>) {
    return std::make_unique<Histogram>(bounds);
  } else {
    return std::make_unique<T>();
  }
}

}  // namespace

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], /*allow_colon=*/true, i == 0)) return false;
  }
  return true;
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty() || absl::string_view(name).substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], /*allow_colon=*/false, i == 0)) return false;
  }
  return true;
}

template <typename T>
MetricFamily<T>::MetricFamily(MetricSpec spec, MetricType type, std::vector<double> bounds)
    : MetricFamilyBase(std::move(spec)), type_(type), bounds_(std::move(bounds)) {
  // A family without labels always has its one child, so it shows up as 0 before first use.
  if (spec_.labels.empty()) children_.emplace(std::vector<std::string>{}, NewChild<T>(bounds_));
}

template <typename T>
T& MetricFamily<T>::WithLabels(const std::vector<std::string>& values) {
  TM_CHECK(values.size() == spec_.labels.size(), spec_.name, ": expected ", spec_.labels.size(),
           " label values, got ", values.size());
  std::vector<std::string> key = values;
  for (size_t i = 0; i < key.size(); ++i) {
    if (spec_.labels[i].cap != nullptr) key[i] = spec_.labels[i].cap->Canonicalize(key[i]);
  }
  absl::MutexLock lock(&mu_);
  auto it = children_.find(key);
  if (it == children_.end()) it = children_.emplace(std::move(key), NewChild<T>(bounds_)).first;
  return *it->second;
}

template <typename T>
T& MetricFamily<T>::WithLabels(std::initializer_list<absl::string_view> values) {
  std::vector<std::string> v;
  v.reserve(values.size());
  for (absl::string_view s : values) v.emplace_back(s);
  return WithLabels(v);
}

template <typename T>
void MetricFamily<T>::Render(std::string& out) const {
  internal::RenderHeader(spec_, type_, out);
  absl::MutexLock lock(&mu_);
  for (const auto& [values, child] : children_) internal::RenderChild(spec_, values, *child, out);
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

namespace {

bool SameShape(const MetricFamilyBase& f, const MetricSpec& spec, MetricType type,
               const std::vector<double>& bounds) {
  if (f.type() != type || f.spec().labels.size() != spec.labels.size()) return false;
  for (size_t i = 0; i < spec.labels.size(); ++i) {
    if (f.spec().labels[i].name != spec.labels[i].name) return false;
  }
  if (type == MetricType::kHistogram && static_cast<const HistogramFamily&>(f).bounds() != bounds) {
    return false;
  }
  return true;
}

void CheckSpec(const MetricSpec& spec, MetricType type, const std::vector<double>& bounds) {
  TM_CHECK(IsValidMetricName(spec.name), "invalid metric name '", spec.name, "'");
  for (const LabelSpec& l : spec.labels) {
    TM_CHECK(IsValidLabelName(l.name), spec.name, ": invalid label name '", l.name, "'");
    TM_CHECK(!(type == MetricType::kHistogram && l.name == "le"), spec.name,
             ": 'le' is reserved for histogram buckets");
  }
  if (type != MetricType::kHistogram) return;
  TM_CHECK(!bounds.empty(), spec.name, ": histogram needs at least one bucket");
  for (size_t i = 0; i < bounds.size(); ++i) {
    TM_CHECK(std::isfinite(bounds[i]), spec.name, ": bucket bounds must be finite");
    TM_CHECK(i == 0 || bounds[i - 1] < bounds[i], spec.name,
             ": bucket bounds must increase strictly");
  }
}

}  // namespace

MetricFamilyBase& MetricRegistry::AddFamily(MetricSpec spec, MetricType type,
                                            std::vector<double> bounds) {
  CheckSpec(spec, type, bounds);
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    if (f->spec().name != spec.name) continue;
    TM_CHECK(SameShape(*f, spec, type, bounds), "metric '", spec.name,
             "' registered twice with different type, labels or buckets");
    return *f;
  }
  std::unique_ptr<MetricFamilyBase> family;
  switch (type) {
    case MetricType::kCounter:
      family = std::make_unique<CounterFamily>(std::move(spec), type);
      break;
    case MetricType::kGauge:
      family = std::make_unique<GaugeFamily>(std::move(spec), type);
      break;
    case MetricType::kHistogram:
      family = std::make_unique<HistogramFamily>(std::move(spec), type, std::move(bounds));
      break;
  }
  families_.push_back(std::move(family));
  return *families_.back();
}

CounterFamily& MetricRegistry::AddCounter(MetricSpec spec) {
  return static_cast<CounterFamily&>(AddFamily(std::move(spec), MetricType::kCounter, {}));
}

GaugeFamily& MetricRegistry::AddGauge(MetricSpec spec) {
  return static_cast<GaugeFamily&>(AddFamily(std::move(spec), MetricType::kGauge, {}));
}

HistogramFamily& MetricRegistry::AddHistogram(MetricSpec spec, std::vector<double> bounds) {
  return static_cast<HistogramFamily&>(
      AddFamily(std::move(spec), MetricType::kHistogram, std::move(bounds)));
}

bool MetricRegistry::Contains(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    if (f->spec().name == name) return true;
  }
  return false;
}

int MetricRegistry::AddCollectHook(std::function<void()> hook) {
  absl::MutexLock lock(&hooks_mu_);
  const int id = next_hook_id_++;
  hooks_.emplace(id, std::move(hook));
  return id;
}

void MetricRegistry::RemoveCollectHook(int id) {
  absl::MutexLock lock(&hooks_mu_);
  hooks_.erase(id);
}

std::string MetricRegistry::RenderText() const {
  {
    absl::MutexLock lock(&hooks_mu_);
    for (const auto& [id, hook] : hooks_) hook();
  }
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) f->Render(out);
  return out;
}

std::vector<double> TtftBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}

std::vector<double> InterTokenBuckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
}

std::vector<double> RequestLatencyBuckets() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

std::vector<double> OneTwoFiveBuckets(double max_value) {
  std::vector<double> out;
  for (double exponent = 1.0;; exponent *= 10.0) {
    for (double m : {1.0, 2.0, 5.0}) {
      out.push_back(m * exponent);
      if (m * exponent >= max_value) return out;
    }
  }
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  TM_CHECK(start > 0 && factor > 1 && count > 0, "bad exponential bucket parameters");
  std::vector<double> out;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

}  // namespace tokenmill::metrics
