// Scheduler: completing a step (tokens, forks, finishing) and aborts.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"
#include "tokenmill/scheduler/scheduler.h"

namespace tokenmill {

const StepOutcome& Scheduler::OnStepDone(std::span<const int32_t> sampled_token_ids) {
  TM_CHECK(is_step_in_flight_, "OnStepDone() without a plan in flight");
  outcome_.updates.clear();
  outcome_.finished_requests.clear();
  size_t next = 0;
  std::vector<Sequence*> forks;
  for (const StepEntry& e : step_) {
    if (e.is_removed) continue;
    Sequence* seq = e.seq;
    seq->step_index = -1;
    seq->num_computed_tokens = e.start + e.num_new;
    kv_->MarkComputed(seq->id, seq->token_ids, seq->num_computed_tokens);
    (e.is_decode ? stats_.num_decode_tokens : stats_.num_prefill_tokens) += e.num_new;
    if (e.num_samples == 0) continue;
    TM_CHECK(next + e.num_samples <= sampled_token_ids.size(), "OnStepDone got ",
             sampled_token_ids.size(), " tokens; the plan samples more");
    const std::span<const int32_t> tokens = sampled_token_ids.subspan(next, e.num_samples);
    next += e.num_samples;
    // Forks share the leader's blocks as they are now, before its own token can end it.
    ForkParked(seq, &forks);
    AppendToken(seq, tokens[0]);
    for (size_t i = 0; i < forks.size(); ++i) AppendToken(forks[i], tokens[i + 1]);
  }
  TM_CHECK(next == sampled_token_ids.size(), "OnStepDone got ", sampled_token_ids.size(),
           " tokens; the plan samples ", next);
  step_.clear();
  copies_.clear();
  CompactRunning();
  is_step_in_flight_ = false;
  return outcome_;
}

void Scheduler::DiscardStep() {
  TM_CHECK(is_step_in_flight_, "DiscardStep() without a plan in flight");
  for (const auto& [owner, copy] : copies_) {
    // Its table already names the copy's destination, which now holds no valid KV.
    if (owner->step_index >= 0 && owner->status == SequenceStatus::kRunning) Preempt(owner);
  }
  for (const StepEntry& e : step_) e.seq->step_index = -1;
  step_.clear();
  copies_.clear();
  CompactRunning();
  is_step_in_flight_ = false;
}

void Scheduler::ForkParked(Sequence* leader, std::vector<Sequence*>* forks) {
  forks->swap(leader->parked_forks);
  leader->parked_forks.clear();
  for (Sequence* fork : *forks) {
    kv_->Fork(leader->id, fork->id);
    fork->is_parked = false;
    fork->was_admitted = true;
    fork->num_cached_prompt_tokens = leader->num_cached_prompt_tokens;
    fork->num_computed_tokens = leader->num_computed_tokens;
    fork->status = SequenceStatus::kRunning;
    fork->running_index = static_cast<int>(running_.size());
    running_.push_back(fork);
    ++num_running_;
    // The slot count is unchanged: the leader reserved these slots when it was admitted.
  }
}

void Scheduler::AppendToken(Sequence* seq, int32_t token) {
  seq->token_ids.push_back(token);
  ++stats_.num_generated_tokens;
  const FinishReason reason = CheckFinish(*seq, token);
  outcome_.updates.push_back({seq->id, seq->request_id, seq->sample_index, token, reason});
  if (reason == FinishReason::kNone) return;
  EndSequence(seq, reason);
  if (--requests_.at(seq->request_id)->num_live == 0) {
    RetireRequest(seq->request_id, &outcome_.finished_requests);
  }
}

FinishReason Scheduler::CheckFinish(const Sequence& seq, int32_t token) const {
  const RequestSpec& spec = *seq.spec;
  const int num_output = seq.num_output_tokens();
  if (num_output > spec.min_tokens &&
      std::find(spec.stop_token_ids.begin(), spec.stop_token_ids.end(), token) !=
          spec.stop_token_ids.end()) {
    return FinishReason::kStop;
  }
  if (num_output >= spec.max_tokens) return FinishReason::kLength;
  if (seq.num_tokens() >= max_seq_len_) return FinishReason::kContextLength;
  return FinishReason::kNone;
}

void Scheduler::EndSequence(Sequence* seq, FinishReason reason) {
  if (seq->status == SequenceStatus::kRunning) {
    kv_->Free(seq->id);
    running_[seq->running_index] = nullptr;
    seq->running_index = -1;
    --num_running_;
    num_running_slots_ -= SlotsOf(seq);
  } else if (!seq->is_parked) {
    waiting_.Remove(seq);
  }
  seq->status = IsAbort(reason) ? SequenceStatus::kAborted : SequenceStatus::kFinished;
  seq->finish_reason = reason;
}

void Scheduler::AbortNow(RequestId request_id, uint64_t arrival_order, FinishReason reason) {
  const auto it = requests_.find(request_id);
  if (it == requests_.end() || it->second->seqs[0]->arrival_order != arrival_order) return;
  RequestState& request = *it->second;
  for (const auto& owned : request.seqs) {
    Sequence* seq = owned.get();
    if (seq->status == SequenceStatus::kFinished || seq->status == SequenceStatus::kAborted) {
      continue;
    }
    // A leader's slot count covers its parked samples: end it before them.
    EndSequence(seq, reason);
    plan_.aborted.push_back({seq->id, request_id, seq->sample_index, reason});
    ++stats_.num_aborted_sequences;
    for (Sequence* fork : seq->parked_forks) {
      EndSequence(fork, reason);
      fork->is_parked = false;
      plan_.aborted.push_back({fork->id, request_id, fork->sample_index, reason});
      ++stats_.num_aborted_sequences;
    }
    seq->parked_forks.clear();
  }
  request.num_live = 0;
  RetireRequest(request_id, &plan_.finished_requests);
}

void Scheduler::RetireRequest(RequestId request_id, std::vector<RequestId>* finished) {
  const auto it = requests_.find(request_id);
  retired_.push_back(std::move(it->second));
  requests_.erase(it);
  finished->push_back(request_id);
  ++stats_.num_finished_requests;
}

}  // namespace tokenmill
