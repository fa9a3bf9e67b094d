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
  }
  record.num_sequences = static_cast<int>(plan.sequences.size());
  for (const SequenceRef& p : plan.preempted) {
    if (auto it = requests_.find(p.request_id); it != requests_.end()) ++it->second->num_preemptions;
  }
  BuildBatch(plan);
  const absl::Status status = executor_->Execute(batch_, plan.block_copies, &logits_);
  if (!status.ok()) {
    FailStep(plan, status);
    return true;
  }
  Sample(plan);
  const StepOutcome& outcome = scheduler_->OnStepDone(sampled_);  // invalidates `plan`
  const double end_s = clock_->NowSeconds();
  record.duration_s = end_s - start_s;
  // Step time goes to requests in proportion to the tokens they computed (DESIGN.md).
  const double total = record.num_prefill_tokens + record.num_decode_tokens;
  for (const StepRecord::Share& sh : record.shares) {
    requests_.at(sh.request_id)->device_seconds += record.duration_s * sh.num_tokens / total;
  }
  ++num_steps_;
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

void Engine::FailStep(const StepPlan& plan, const absl::Status& status) {
  ++num_failed_steps_;
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
  if (event.finished) lr->finished[event.index] = true;
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

RequestUsage Engine::UsageOf(const LiveRequest& lr, double now_s) const {
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
  u.device_seconds = lr.device_seconds;
  return u;
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
