#include "tokenmill/metrics/serving_metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill::metrics {
namespace {

constexpr char kPrefix[] = "tokenmill:";

MetricSpec Spec(const char* name, const char* help, std::vector<LabelSpec> extra = {}) {
  MetricSpec spec{absl::StrCat(kPrefix, name), help, {{"model_name", nullptr}}};
  for (LabelSpec& l : extra) spec.labels.push_back(std::move(l));
  return spec;
}

std::string TenantLabel(const std::string& tenant) { return tenant.empty() ? "default" : tenant; }

}  // namespace

ServingMetrics::ServingMetrics(MetricRegistry& registry, const Clock& clock,
                               ServingMetricsOptions options, EnergyMeter* meter)
    : registry_(registry),
      clock_(clock),
      options_(std::move(options)),
      energy_source_(options_.energy_source),
      meter_(meter),
      start_s_(clock.NowSeconds()),
      tenant_cap_(std::make_shared<LabelValueCap>(options_.max_tenants)),
      error_code_cap_(std::make_shared<LabelValueCap>(options_.max_error_codes)),
      reason_cap_(std::make_shared<LabelValueCap>(16)) {
  RegisterEngineMetrics(registry);
  RegisterRequestMetrics(registry);
  if (exports_energy()) RegisterEnergyMetrics(registry);
  if (meter_ != nullptr && !meter_->ReadDeviceStats().empty()) RegisterDeviceGauges(registry);
  hook_id_ = registry.AddCollectHook([this] { Collect(); });
}

ServingMetrics::~ServingMetrics() { registry_.RemoveCollectHook(hook_id_); }

void ServingMetrics::RegisterEngineMetrics(MetricRegistry& r) {
  const std::string& m = options_.model_name;
  num_running_ =
      &r.AddGauge(Spec("num_requests_running", "Requests in the running batch.")).WithLabels({m});
  num_waiting_ = &r.AddGauge(Spec("num_requests_waiting",
                                  "Requests waiting to be scheduled (queued or preempted)."))
                      .WithLabels({m});
  kv_usage_ = &r.AddGauge(Spec("kv_cache_usage_perc",
                               "KV-cache usage, 0 to 1: blocks referenced by live sequences "
                               "over all blocks; evictable cached blocks count as free."))
                   .WithLabels({m});
  batch_occupancy_ = &r.AddGauge(Spec("batch_occupancy_perc",
                                      "Tokens in the last step over the step token budget, 0 "
                                      "to 1."))
                          .WithLabels({m});
  prefix_hit_rate_ = &r.AddGauge(Spec("prefix_cache_hit_rate",
                                      "Prefix-cache hits over queries (tokens) since start, 0 "
                                      "to 1. Windowed: rate(hits)/rate(queries)."))
                          .WithLabels({m});
  uptime_ =
      &r.AddGauge(Spec("uptime_seconds", "Seconds since the engine started.")).WithLabels({m});
  r.AddGauge(Spec("energy_source_info",
                  "Always 1; energy_source names the meter (nvml, rapl, estimated, none).",
                  {{"energy_source", nullptr}}))
      .WithLabels({m, EnergySourceName(energy_source_)})
      .Set(1.0);
  prefix_queries_ = &r.AddCounter(Spec("prefix_cache_queries_total",
                                       "Prompt tokens looked up in the prefix cache."))
                         .WithLabels({m});
  prefix_hits_ =
      &r.AddCounter(Spec("prefix_cache_hits_total", "Prompt tokens found in the prefix cache."))
           .WithLabels({m});
  preemptions_ =
      &r.AddCounter(Spec("num_preemptions_total", "Sequences preempted (KV blocks reclaimed)."))
           .WithLabels({m});
  failed_steps_ = &r.AddCounter(Spec("engine_failed_steps_total",
                                     "Engine steps that failed (returned an error or threw); "
                                     "their requests fail with INTERNAL."))
                       .WithLabels({m});
  iteration_tokens_ =
      &r.AddHistogram(Spec("iteration_tokens_total", "Tokens processed per engine step."),
                      OneTwoFiveBuckets(static_cast<double>(options_.max_num_batched_tokens)))
           .WithLabels({m});
  step_duration_ = &r.AddHistogram(Spec("step_duration_seconds", "Wall time of one engine step."),
                                   ExponentialBuckets(0.0005, 2.0, 16))
                        .WithLabels({m});
  itl_ = &r.AddHistogram(Spec("inter_token_latency_seconds",
                              "Time between consecutive output tokens of a sequence."),
                         InterTokenBuckets())
              .WithLabels({m});
}

void ServingMetrics::RegisterRequestMetrics(MetricRegistry& r) {
  const std::string& m = options_.model_name;
  ttft_ = &r.AddHistogram(Spec("time_to_first_token_seconds", "Arrival to first generated token."),
                          TtftBuckets())
               .WithLabels({m});
  tpot_ = &r.AddHistogram(Spec("request_time_per_output_token_seconds",
                               "Per request: (finish - first token) / (generated tokens - 1)."),
                          InterTokenBuckets())
               .WithLabels({m});
  e2e_ = &r.AddHistogram(Spec("e2e_request_latency_seconds", "Arrival to finish."),
                         RequestLatencyBuckets())
              .WithLabels({m});
  queue_ = &r.AddHistogram(Spec("request_queue_time_seconds", "Arrival to first scheduled."),
                           RequestLatencyBuckets())
                .WithLabels({m});
  const auto lengths = OneTwoFiveBuckets(static_cast<double>(options_.max_model_len));
  prompt_len_ = &r.AddHistogram(Spec("request_prompt_tokens", "Prompt length in tokens."), lengths)
                     .WithLabels({m});
  generation_len_ =
      &r.AddHistogram(Spec("request_generation_tokens", "Generated tokens per request."), lengths)
           .WithLabels({m});
  const LabelSpec tenant{"tenant", tenant_cap_};
  prompt_tokens_ =
      &r.AddCounter(Spec("prompt_tokens_total", "Prompt tokens of finished requests.", {tenant}));
  generation_tokens_ = &r.AddCounter(
      Spec("generation_tokens_total", "Generated tokens of finished requests.", {tenant}));
  cached_tokens_ = &r.AddCounter(
      Spec("prompt_tokens_cached_total", "Prompt tokens served from the prefix cache.", {tenant}));
  success_ = &r.AddCounter(Spec("request_success_total",
                                "Requests finished without error, by finish reason.",
                                {tenant, {"finished_reason", reason_cap_}}));
  errors_ = &r.AddCounter(Spec("request_errors_total", "Requests failed, by error code.",
                               {tenant, {"error_code", error_code_cap_}}));
  device_seconds_ =
      &r.AddCounter(Spec("request_device_seconds_total",
                         "Device (GPU or node) seconds attributed to requests.", {tenant}));
  cost_ = &r.AddCounter(Spec("cost_total", "Cost attributed to requests, in `currency`.",
                             {tenant, {"currency", nullptr}}));
}

void ServingMetrics::RegisterEnergyMetrics(MetricRegistry& r) {
  const char* source = EnergySourceName(energy_source_);
  energy_ =
      &r.AddCounter(Spec("energy_joules_total", "Energy attributed to finished requests, joules.",
                         {{"tenant", tenant_cap_}, {"energy_source", nullptr}}));
  step_energy_ =
      &r.AddCounter(Spec("step_energy_joules_total", "Energy of engine steps as they run, joules.",
                         {{"energy_source", nullptr}}))
           .WithLabels({options_.model_name, source});
}

void ServingMetrics::RegisterDeviceGauges(MetricRegistry& r) {
  gpu_utilization_ = &r.AddGauge({"tokenmill:gpu_utilization_perc",
                                  "Fraction of time a kernel ran on the GPU (NVML), 0 to 1.",
                                  {{"gpu", nullptr}}});
  gpu_power_ = &r.AddGauge(
      {"tokenmill:gpu_power_watts", "GPU board power draw (NVML), watts.", {{"gpu", nullptr}}});
}

void ServingMetrics::Collect() {
  uptime_->Set(clock_.NowSeconds() - start_s_);
  const double queries = prefix_queries_->value();
  if (queries > 0) prefix_hit_rate_->Set(prefix_hits_->value() / queries);
  if (gpu_utilization_ == nullptr) return;
  for (const DeviceStats& s : meter_->ReadDeviceStats()) {
    const std::string gpu = absl::StrCat(s.index);
    if (s.utilization) gpu_utilization_->WithLabels({gpu}).Set(*s.utilization);
    if (s.power_watts) gpu_power_->WithLabels({gpu}).Set(*s.power_watts);
  }
}

void ServingMetrics::SetSchedulerState(int num_running, int num_waiting) {
  num_running_->Set(num_running);
  num_waiting_->Set(num_waiting);
}

void ServingMetrics::SetKvCacheUsage(int64_t num_referenced_blocks, int64_t num_total_blocks) {
  TM_DCHECK(num_referenced_blocks >= 0 && num_referenced_blocks <= num_total_blocks);
  kv_usage_->Set(num_total_blocks > 0 ? static_cast<double>(num_referenced_blocks) /
                                            static_cast<double>(num_total_blocks)
                                      : 0.0);
}

void ServingMetrics::RecordPrefixCacheLookup(int64_t num_queried_tokens, int64_t num_hit_tokens) {
  prefix_queries_->Increment(static_cast<double>(num_queried_tokens));
  prefix_hits_->Increment(static_cast<double>(num_hit_tokens));
}

void ServingMetrics::RecordPreemptions(int64_t num_preemptions) {
  preemptions_->Increment(static_cast<double>(num_preemptions));
}

void ServingMetrics::RecordStep(const StepSample& step, int64_t token_budget) {
  int64_t tokens = 0;
  for (const SequenceWork& w : step.work) tokens += w.num_tokens;
  iteration_tokens_->Observe(static_cast<double>(tokens));
  step_duration_->Observe(step.duration_ns * 1e-9);
  if (token_budget > 0) {
    batch_occupancy_->Set(std::min(1.0, static_cast<double>(tokens) / token_budget));
  }
  if (step_energy_ != nullptr && step.energy_uj) step_energy_->Increment(*step.energy_uj * 1e-6);
}

void ServingMetrics::RecordFailedStep(const StepSample& step) {
  failed_steps_->Increment();
  if (step_energy_ != nullptr && step.energy_uj) step_energy_->Increment(*step.energy_uj * 1e-6);
}

void ServingMetrics::ObserveInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void ServingMetrics::RecordFinishedRequest(const RequestRecord& r) {
  const std::string& m = options_.model_name;
  const std::string tenant = TenantLabel(r.tenant);
  prompt_tokens_->WithLabels({m, tenant}).Increment(static_cast<double>(r.prompt_tokens));
  generation_tokens_->WithLabels({m, tenant}).Increment(static_cast<double>(r.generated_tokens));
  cached_tokens_->WithLabels({m, tenant}).Increment(static_cast<double>(r.cached_tokens));
  device_seconds_->WithLabels({m, tenant}).Increment(r.device_s);
  cost_->WithLabels({m, tenant, r.currency}).Increment(r.cost);
  if (energy_ != nullptr && r.joules) {
    energy_->WithLabels({m, tenant, EnergySourceName(r.energy_source)}).Increment(*r.joules);
  }
  if (r.is_error()) {
    errors_->WithLabels({m, tenant, r.error_code}).Increment();
    return;
  }
  success_->WithLabels({m, tenant, r.finish_reason}).Increment();
  if (r.ttft_s) ttft_->Observe(*r.ttft_s);
  if (r.tpot_s) tpot_->Observe(*r.tpot_s);
  if (r.queue_s) queue_->Observe(*r.queue_s);
  e2e_->Observe(r.e2e_s);
  prompt_len_->Observe(static_cast<double>(r.prompt_tokens));
  generation_len_->Observe(static_cast<double>(r.generated_tokens));
}

}  // namespace tokenmill::metrics
