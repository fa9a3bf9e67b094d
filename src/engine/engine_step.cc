// One step of the engine: plan, run, sample, report.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/live_request.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"
#include "tokenmill/engine/engine.h"

namespace tokenmill {

bool Engine::RunStep() {
  const StepPlan& plan = scheduler_->Schedule();
  const double start_s = clock_->NowSeconds();
  EmitAborts(plan, start_s);
  if (!plan.has_work()) {
    PublishStats();
    return false;
  }
  StepRecord record;
  record.start_s = start_s;
  record.token_budget = options_.scheduler.max_num_batched_tokens;
  std::vector<metrics::SequenceWork> work;
  for (const ScheduledSequence& s : plan.sequences) {
    LiveRequest& lr = *requests_.at(s.request_id);
    if (lr.first_scheduled_s < 0) lr.first_scheduled_s = start_s;
    if (!s.is_decode) {
      if (lr.cached_tokens < 0 && s.sample_index == 0) lr.cached_tokens = s.start_position;
      lr.prefill_tokens_computed += s.num_new_tokens;
      record.num_prefill_tokens += s.num_new_tokens;
    } else {
      record.num_decode_tokens += s.num_new_tokens;
    }
    record.shares.push_back({s.request_id, s.num_new_tokens});
    // Attribution is per request: its samples' tokens add up.
    if (!work.empty() && work.back().sequence_id == static_cast<uint64_t>(s.request_id)) {
      work.back().num_tokens += s.num_new_tokens;
    } else {
      work.push_back({static_cast<uint64_t>(s.request_id), s.num_new_tokens});
    }
  }
  record.num_sequences = static_cast<int>(plan.sequences.size());
  for (const SequenceRef& p : plan.preempted) {
    if (auto it = requests_.find(p.request_id); it != requests_.end()) ++it->second->num_preemptions;
  }
  MergeWork(&work);
  BeginStepMeasurement(std::move(work));
  BuildBatch(plan);
  const absl::Status status = executor_->Execute(batch_, plan.block_copies, &logits_);
  if (!status.ok()) {
    FailStep(plan, status);
    return true;
  }
  Sample(plan);
  const StepOutcome& outcome = scheduler_->OnStepDone(sampled_);  // invalidates `plan`
  const metrics::StepSample sample = EndStepMeasurement();
  const double end_s = clock_->NowSeconds();
  record.duration_s = static_cast<double>(sample.duration_ns) / 1e9;
  ++num_steps_;
  RecordStepMetrics(sample);
  for (const StepObserver& obs : observers_) obs(record);
  EmitOutcome(outcome, end_s);
  FlushEvents(outcome.finished_requests, end_s);
  PublishStats();
  return true;
}

void Engine::BuildBatch(const StepPlan& plan) {
  batch_.token_ids.clear();
  batch_.positions.clear();
  batch_.logits_rows.clear();
  batch_.sequences.resize(plan.sequences.size());
  int32_t row = 0;
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    const ScheduledSequence& s = plan.sequences[i];
    BatchSequence& b = batch_.sequences[i];
    b.query_start = row;
    b.num_query_tokens = s.num_new_tokens;
    b.context_len = s.context_len();
    b.block_table.assign(s.block_table.begin(), s.block_table.end());
    batch_.token_ids.insert(batch_.token_ids.end(), s.new_token_ids.begin(),
                            s.new_token_ids.end());
    for (int32_t p = s.start_position; p < s.context_len(); ++p) batch_.positions.push_back(p);
    row += s.num_new_tokens;
    if (s.needs_logits()) batch_.logits_rows.push_back(row - 1);
  }
}

void Engine::Sample(const StepPlan& plan) {
  sampled_.clear();
  sampled_info_.clear();
  const int vocab = executor_->config().vocab_size;
  size_t logits_row = 0;
  for (const ScheduledSequence& s : plan.sequences) {
    if (!s.needs_logits()) continue;
    const std::span<const float> row(logits_.data() + logits_row * vocab, vocab);
    ++logits_row;
    LiveRequest& lr = *requests_.at(s.request_id);
    // The leader of an n-sample request draws every sample from its prompt's last row.
    for (int k = 0; k < s.num_samples; ++k) {
      const int index = s.sample_index + k;
      SampledToken t = lr.samplers[index].SampleAndAccept(row);
      sampled_.push_back(t.token_id);
      sampled_info_[{s.request_id, index}] = std::move(t);
    }
  }
}

void Engine::BeginStepMeasurement(std::vector<metrics::SequenceWork> work) {
  step_work_ = std::move(work);
  is_step_measured_ = true;
  probe_->Begin();
}

// Step time and energy go to the requests in the step in proportion to the tokens they
// computed (DESIGN.md; src/metrics/README.md states the rounding), whether the step succeeded,
// failed or threw: the device was busy for them all the same, and the ledger's totals must
// add up to the meter's.
metrics::StepSample Engine::EndStepMeasurement() {
  TM_CHECK(is_step_measured_, "EndStepMeasurement without BeginStepMeasurement");
  is_step_measured_ = false;
  metrics::StepSample sample = probe_->End(std::move(step_work_));
  step_work_.clear();
  accountant_.RecordStep(sample);
  return sample;
}

void Engine::FailStep(const StepPlan& plan, const absl::Status& status) {
  // Before the aborts below: the requests' records (made when their aborts are emitted)
  // must include this step's share.
  const metrics::StepSample sample = EndStepMeasurement();
  ++num_failed_steps_;
  if (options_.accounting.metrics != nullptr) options_.accounting.metrics->RecordFailedStep(sample);
  spdlog::error("engine: step failed, failing its {} sequences: {}", plan.sequences.size(),
                status.ToString());
  std::vector<RequestId> affected;
  for (const ScheduledSequence& s : plan.sequences) affected.push_back(s.request_id);
  scheduler_->DiscardStep();
  for (RequestId rid : affected) {
    LiveRequest& lr = *requests_.at(rid);
    if (lr.error.ok()) lr.error = absl::InternalError(absl::StrCat("step failed: ", status.message()));
    scheduler_->AbortRequest(rid, FinishReason::kError);
  }
  PublishStats();
}

void Engine::Queue(LiveRequest* lr, TokenEvent event) {
  if (event.finished) {
    lr->finished[event.index] = true;
    lr->reasons[event.index] = event.finish_reason;
  }
  events_.emplace_back(lr, std::move(event));
}

void Engine::EmitOutcome(const StepOutcome& outcome, double now_s) {
  for (const SequenceUpdate& u : outcome.updates) {
    auto it = requests_.find(u.request_id);
    if (it == requests_.end()) continue;
    LiveRequest& lr = *it->second;
    if (lr.finished[u.sample_index]) continue;
    ++lr.num_generated;
    if (lr.first_token_s < 0) lr.first_token_s = now_s;
    lr.last_token_s = now_s;
    double& last = lr.sample_last_token_s[u.sample_index];
    if (last >= 0 && options_.accounting.metrics != nullptr) {
      options_.accounting.metrics->ObserveInterTokenLatency(now_s - last);
    }
    last = now_s;
    TokenEvent ev;
    ev.index = u.sample_index;
    if (!lr.stopped[u.sample_index]) {
      ev.token_ids.push_back(u.token_id);
      if (lr.request.sampling.logprobs > 0) {
        ev.logprobs.push_back(sampled_info_[{u.request_id, u.sample_index}]);
      }
    }
    if (u.finish_reason != FinishReason::kNone) {
      ev.finished = true;
      ev.finish_reason = lr.stopped[u.sample_index] ? FinishReason::kStop : u.finish_reason;
    }
    if (!ev.token_ids.empty() || ev.finished) Queue(&lr, std::move(ev));
  }
}

void Engine::EmitAborts(const StepPlan& plan, double now_s) {
  for (const SequenceRef& ref : plan.aborted) {
    auto it = requests_.find(ref.request_id);
    if (it == requests_.end()) continue;
    LiveRequest& lr = *it->second;
    if (lr.finished[ref.sample_index]) continue;
    TokenEvent ev;
    ev.index = ref.sample_index;
    ev.finished = true;
    ev.finish_reason = lr.stopped[ref.sample_index] ? FinishReason::kStop : ref.reason;
    if (ev.finish_reason == FinishReason::kError) {
      ev.status = lr.error.ok() ? absl::InternalError("request failed") : lr.error;
    }
    Queue(&lr, std::move(ev));
  }
  FlushEvents(plan.finished_requests, now_s);
}

RequestUsage Engine::UsageOf(LiveRequest& lr, double now_s) {
  RequestUsage u;
  u.prompt_tokens = static_cast<int>(lr.request.prompt_ids.size());
  u.cached_tokens = std::max(0, lr.cached_tokens);
  u.generated_tokens = lr.num_generated;
  u.prefill_tokens_computed = lr.prefill_tokens_computed;
  u.num_preemptions = lr.num_preemptions;
  u.queue_s = (lr.first_scheduled_s < 0 ? now_s : lr.first_scheduled_s) - lr.arrival_s;
  u.ttft_s = lr.first_token_s < 0 ? 0 : lr.first_token_s - lr.arrival_s;
  const int per_seq = lr.num_generated / std::max(1, lr.request.n);
  u.tpot_s = per_seq > 1 ? (lr.last_token_s - lr.first_token_s) / (per_seq - 1) : 0;
  u.e2e_s = now_s - lr.arrival_s;
  u.record = MakeRecord(lr, now_s);
  u.device_seconds = u.record.device_s;
  u.joules = u.record.joules;
  return u;
}

metrics::RequestRecord Engine::MakeRecord(LiveRequest& lr, double now_s) {
  metrics::RequestRecord r;
  r.request_id = lr.request.id;
  r.tenant = lr.request.tenant;
  r.model = lr.request.model.empty() ? executor_->config().name : lr.request.model;
  r.prompt_tokens = static_cast<int64_t>(lr.request.prompt_ids.size());
  r.cached_tokens = std::max(0, lr.cached_tokens);
  r.generated_tokens = lr.num_generated;
  r.finish_reason = "stop";
  for (FinishReason fr : lr.reasons) {
    if (fr == FinishReason::kError) {
      r.finish_reason = "error";
      r.error_code = "internal";
      break;
    }
    if (fr == FinishReason::kDeadline) {
      r.finish_reason = "error";
      r.error_code = "deadline_exceeded";
    } else if (fr == FinishReason::kCancelled && r.error_code.empty()) {
      r.finish_reason = "abort";
    } else if ((fr == FinishReason::kLength || fr == FinishReason::kContextLength) &&
               r.finish_reason == "stop") {
      r.finish_reason = "length";
    }
  }
  r.time_unix_s = clock_->WallSeconds();
  metrics::RequestTimes times;
  times.arrival_s = lr.arrival_s;
  if (lr.first_scheduled_s >= 0) times.first_scheduled_s = lr.first_scheduled_s;
  if (lr.first_token_s >= 0) times.first_token_s = lr.first_token_s;
  times.finish_s = now_s;
  const metrics::EnergySource source = options_.accounting.energy_meter != nullptr
                                           ? options_.accounting.energy_meter->source()
                                           : metrics::EnergySource::kNone;
  metrics::FinalizeRequestRecord(times, accountant_.Release(static_cast<uint64_t>(lr.rid)),
                                 *cost_model_, source, r);
  if (options_.accounting.metrics != nullptr) options_.accounting.metrics->RecordFinishedRequest(r);
  if (options_.accounting.ledger != nullptr) {
    if (absl::Status s = options_.accounting.ledger->Append(r); !s.ok()) {
      spdlog::error("ledger: {}", s.ToString());
    }
  }
  return r;
}

void Engine::RecordStepMetrics(const metrics::StepSample& sample) {
  metrics::ServingMetrics* m = options_.accounting.metrics;
  if (m == nullptr) return;
  const KvStats kv = kv_->stats();
  m->RecordStep(sample, options_.scheduler.max_num_batched_tokens);
  m->RecordPrefixCacheLookup(kv.prefix_query_tokens - last_kv_stats_.prefix_query_tokens,
                             kv.prefix_hit_tokens - last_kv_stats_.prefix_hit_tokens);
  last_kv_stats_ = kv;
}

// A request's samples may appear apart in a plan (decodes, then a prefill chunk); the
// accountant wants each id once per step.
void Engine::MergeWork(std::vector<metrics::SequenceWork>* work) {
  std::sort(work->begin(), work->end(),
            [](const auto& a, const auto& b) { return a.sequence_id < b.sequence_id; });
  size_t out = 0;
  for (size_t i = 0; i < work->size(); ++i) {
    if (out > 0 && (*work)[out - 1].sequence_id == (*work)[i].sequence_id) {
      (*work)[out - 1].num_tokens += (*work)[i].num_tokens;
    } else {
      (*work)[out++] = (*work)[i];
    }
  }
  work->resize(out);
}

void Engine::FlushEvents(std::span<const RequestId> finished_requests, double now_s) {
  // A finished request's usage rides on its last finished event.
  for (RequestId rid : finished_requests) {
    auto it = requests_.find(rid);
    if (it == requests_.end()) continue;
    LiveRequest* lr = it->second.get();
    for (int i = 0; i < lr->request.n; ++i) {
      if (!lr->finished[i]) {  // defensive: every sample gets its finished event
        TokenEvent ev;
        ev.index = i;
        ev.finished = true;
        ev.finish_reason = FinishReason::kCancelled;
        Queue(lr, std::move(ev));
      }
    }
    for (auto e = events_.rbegin(); e != events_.rend(); ++e) {
      if (e->first == lr && e->second.finished) {
        e->second.usage = UsageOf(*lr, now_s);
        break;
      }
    }
  }
  for (auto& [lr, ev] : events_) lr->stream->Push(std::move(ev));
  events_.clear();
  if (finished_requests.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (RequestId rid : finished_requests) {
    auto it = requests_.find(rid);
    if (it == requests_.end()) continue;
    live_ids_.erase(it->second->request.id);
    requests_.erase(it);
    --num_pending_;
  }
}

void Engine::AbortAll(FinishReason reason) {
  if (requests_.empty()) return;
  for (const auto& [rid, lr] : requests_) scheduler_->AbortRequest(rid, reason);
  const StepPlan& plan = scheduler_->Schedule();
  const bool has_work = plan.has_work();
  EmitAborts(plan, clock_->NowSeconds());
  if (has_work) scheduler_->DiscardStep();
}

}  // namespace tokenmill
