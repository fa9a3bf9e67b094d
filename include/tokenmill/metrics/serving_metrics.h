// ServingMetrics: the engine's Prometheus metrics, vLLM's names under the `tokenmill:` prefix
// (docs/metrics.md lists each one with type, labels and unit).
//
// Every metric carries model_name (one ServingMetrics per engine; several engines may share a
// registry). Per-request counters also carry `tenant`, capped at options.max_tenants distinct
// values (later tenants are counted as "other"). Energy metrics exist only when a meter
// measures or estimates energy: with EnergySource::kNone they are not registered at all, so
// they are absent from /metrics rather than 0. Estimated energy carries
// energy_source="estimated".
//
// Thread-safety: all methods are thread-safe. The step-loop methods (Set*, RecordStep,
// RecordFailedStep, RecordPrefixCacheLookup, RecordPreemptions, ObserveInterTokenLatency)
// are lock-free; RecordFinishedRequest takes a family mutex to find the tenant's children.
#pragma once

#include <cstdint>
#include <string>

#include "tokenmill/core/clock.h"
#include "tokenmill/metrics/energy_meter.h"
#include "tokenmill/metrics/registry.h"
#include "tokenmill/metrics/request_record.h"
#include "tokenmill/metrics/step_accounting.h"

namespace tokenmill::metrics {

struct ServingMetricsOptions {
  std::string model_name;
  EnergySource energy_source = EnergySource::kNone;  // the engine's meter->source()
  int max_tenants = 32;                              // distinct tenant label values before "other"
  int max_error_codes = 32;               // distinct error_code label values before "other"
  int64_t max_model_len = 4096;           // upper bucket of prompt / generation length histograms
  int64_t max_num_batched_tokens = 8192;  // upper bucket of iteration_tokens_total
};

class ServingMetrics {
 public:
  // Registers the families in `registry` and a collect hook (uptime, hit rate, GPU gauges).
  // `meter` is optional and not owned; when it reports device stats at construction, the GPU
  // utilization and power gauges are registered and refreshed at every scrape.
  // Requires: registry, clock and meter outlive this object.
  ServingMetrics(MetricRegistry& registry, const Clock& clock, ServingMetricsOptions options,
                 EnergyMeter* meter = nullptr);
  ~ServingMetrics();
  ServingMetrics(const ServingMetrics&) = delete;
  ServingMetrics& operator=(const ServingMetrics&) = delete;

  // --- engine step loop ---
  void SetSchedulerState(int num_running, int num_waiting);
  // Blocks referenced by live sequences over all blocks; evictable cached blocks count as
  // free. Requires: 0 <= num_referenced_blocks <= num_total_blocks.
  void SetKvCacheUsage(int64_t num_referenced_blocks, int64_t num_total_blocks);
  // One prefix-cache lookup: prompt tokens looked up and tokens found cached.
  void RecordPrefixCacheLookup(int64_t num_queried_tokens, int64_t num_hit_tokens);
  void RecordPreemptions(int64_t num_preemptions = 1);
  // Step duration, tokens in the step, occupancy of `token_budget` and, when known, energy.
  void RecordStep(const StepSample& step, int64_t token_budget);
  // A step that failed (returned an error or threw; its requests fail): counted, and its
  // energy, spent all the same, added to the step energy. The duration and token histograms
  // describe completed steps only.
  void RecordFailedStep(const StepSample& step);
  // Time between two consecutive output tokens of one sequence.
  void ObserveInterTokenLatency(double seconds);

  // --- per finished request (success, abort or error) ---
  // Token, cost, device-time and energy counters for every request; latency and length
  // histograms only for requests without an error (an error's timings measure the failure).
  void RecordFinishedRequest(const RequestRecord& record);

  bool exports_energy() const { return energy_source_ != EnergySource::kNone; }

 private:
  void RegisterEngineMetrics(MetricRegistry& registry);
  void RegisterRequestMetrics(MetricRegistry& registry);
  void RegisterEnergyMetrics(MetricRegistry& registry);
  void RegisterDeviceGauges(MetricRegistry& registry);
  void Collect();

  MetricRegistry& registry_;
  const Clock& clock_;
  const ServingMetricsOptions options_;
  const EnergySource energy_source_;
  EnergyMeter* const meter_;
  const double start_s_;
  std::shared_ptr<LabelValueCap> tenant_cap_;
  std::shared_ptr<LabelValueCap> error_code_cap_;
  std::shared_ptr<LabelValueCap> reason_cap_;
  int hook_id_ = -1;

  // Children for this model (label-less apart from model_name): looked up once.
  Gauge* num_running_ = nullptr;
  Gauge* num_waiting_ = nullptr;
  Gauge* kv_usage_ = nullptr;
  Gauge* batch_occupancy_ = nullptr;
  Gauge* prefix_hit_rate_ = nullptr;
  Gauge* uptime_ = nullptr;
  Counter* prefix_queries_ = nullptr;
  Counter* prefix_hits_ = nullptr;
  Counter* preemptions_ = nullptr;
  Counter* failed_steps_ = nullptr;
  Histogram* iteration_tokens_ = nullptr;
  Histogram* step_duration_ = nullptr;
  Histogram* itl_ = nullptr;
  Histogram* ttft_ = nullptr;
  Histogram* tpot_ = nullptr;
  Histogram* e2e_ = nullptr;
  Histogram* queue_ = nullptr;
  Histogram* prompt_len_ = nullptr;
  Histogram* generation_len_ = nullptr;
  Counter* step_energy_ = nullptr;  // null when energy is not exported

  // Families keyed by tenant (and more) at request finish.
  CounterFamily* prompt_tokens_ = nullptr;
  CounterFamily* generation_tokens_ = nullptr;
  CounterFamily* cached_tokens_ = nullptr;
  CounterFamily* success_ = nullptr;
  CounterFamily* errors_ = nullptr;
  CounterFamily* device_seconds_ = nullptr;
  CounterFamily* cost_ = nullptr;
  CounterFamily* energy_ = nullptr;  // null when energy is not exported
  GaugeFamily* gpu_utilization_ = nullptr;
  GaugeFamily* gpu_power_ = nullptr;
};

}  // namespace tokenmill::metrics
