// Scheduler: admission, planning and preemption. Completion of a step (appending tokens,
// forks, finishing) lives in scheduler_step_done.cc.
#include "tokenmill/scheduler/scheduler.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill {

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* kv, const Clock* clock)
    : config_(config),
      kv_(kv),
      clock_(clock),
      waiting_(WaitingQueue::Options{.quantum_tokens = config.fair_share_quantum_tokens,
                                     .aging_s = config.priority_aging_s,
                                     .tenant_weights = config.tenant_weights,
                                     .default_tenant_weight = config.default_tenant_weight}) {
  const absl::Status valid = config.Validate();
  TM_CHECK(valid.ok(), valid.ToString());
  TM_CHECK(kv != nullptr && clock != nullptr, "Scheduler needs a KvCacheManager and a Clock");
  const int64_t pool_tokens = static_cast<int64_t>(kv->num_blocks()) * kv->block_size();
  max_seq_len_ = static_cast<int>(std::min<int64_t>(config.max_model_len, pool_tokens));
  watermark_blocks_ = static_cast<int>(config.kv_watermark * kv->num_blocks());
}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::AddRequest(RequestSpec spec) {
  const RequestId id = spec.request_id;
  const auto bad = [id](const char* field, auto... why) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": ", field, " ", why...));
  };
  if (requests_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id, " is already queued or running"));
  }
  const int prompt_len = static_cast<int>(spec.prompt_token_ids.size());
  if (prompt_len == 0) return bad("prompt_token_ids", "is empty");
  if (prompt_len >= max_seq_len_) {
    return bad("prompt_token_ids", "has ", prompt_len,
               " tokens, leaving no room to generate: ", "the longest sequence is ", max_seq_len_,
               " tokens (max_model_len ", config_.max_model_len, ", KV pool ",
               kv_->num_blocks() * kv_->block_size(), ")");
  }
  if (spec.n < 1 || spec.n > config_.max_num_seqs) {
    return bad("n", "must be in [1, ", config_.max_num_seqs, "], got ", spec.n);
  }
  if (spec.max_tokens < 1) return bad("max_tokens", "must be >= 1, got ", spec.max_tokens);
  if (spec.min_tokens < 0) return bad("min_tokens", "must be >= 0, got ", spec.min_tokens);

  auto request = std::make_unique<RequestState>();
  request->spec = std::move(spec);
  const RequestSpec& s = request->spec;
  const double now_s = clock_->NowSeconds();
  const uint64_t arrival = next_arrival_++;
  for (int i = 0; i < s.n; ++i) {
    auto seq = std::make_unique<Sequence>();
    seq->id = next_seq_id_++;
    seq->request_id = id;
    seq->sample_index = i;
    seq->spec = &s;
    seq->token_ids = s.prompt_token_ids;
    seq->num_prompt_tokens = prompt_len;
    seq->arrival_order = arrival;
    seq->arrival_s = now_s;
    seq_index_[seq->id] = seq.get();
    request->seqs.push_back(std::move(seq));
  }
  Sequence* leader = request->seqs[0].get();
  for (int i = 1; i < s.n; ++i) {
    request->seqs[i]->is_parked = true;
    leader->parked_forks.push_back(request->seqs[i].get());
  }
  waiting_.Push(leader);
  request->num_live = s.n;
  if (s.deadline_s) deadlines_.emplace(*s.deadline_s, id, arrival);
  requests_.emplace(id, std::move(request));
  return absl::OkStatus();
}

bool Scheduler::AbortRequest(RequestId request_id, FinishReason reason) {
  TM_CHECK(IsAbort(reason), "AbortRequest with non-abort reason ", FinishReasonName(reason));
  const auto it = requests_.find(request_id);
  if (it == requests_.end()) return false;
  pending_aborts_.push_back({request_id, it->second->seqs[0]->arrival_order, reason});
  return true;
}

const StepPlan& Scheduler::Schedule() {
  TM_CHECK(!is_step_in_flight_, "Schedule() before OnStepDone()/DiscardStep() of the last plan");
  for (const auto& request : retired_) {
    for (const auto& seq : request->seqs) seq_index_.erase(seq->id);
  }
  retired_.clear();
  plan_.Clear();
  step_.clear();
  copies_.clear();
  const double now_s = clock_->NowSeconds();
  ApplyAborts(now_s);
  budget_ = config_.max_num_batched_tokens;
  ScheduleRunning(/*decodes=*/true);
  ScheduleRunning(/*decodes=*/false);
  // Blocks are short this step: admitting now would only preempt again next step.
  if (plan_.preempted.empty()) AdmitWaiting(now_s);
  CompactRunning();
  BuildPlan();
  kv_->ReleaseCopySources();
  is_step_in_flight_ = plan_.has_work();
  if (is_step_in_flight_) ++stats_.num_steps;
  return plan_;
}

void Scheduler::ApplyAborts(double now_s) {
  for (const PendingAbort& a : pending_aborts_) AbortNow(a.request_id, a.arrival_order, a.reason);
  pending_aborts_.clear();
  while (!deadlines_.empty() && std::get<0>(deadlines_.top()) <= now_s) {
    const auto [deadline_s, request_id, arrival_order] = deadlines_.top();
    deadlines_.pop();
    AbortNow(request_id, arrival_order, FinishReason::kDeadline);  // no-op if it ended
  }
}

int Scheduler::MaxChunk() const {
  return config_.max_prefill_chunk_tokens > 0 ? config_.max_prefill_chunk_tokens
                                              : std::numeric_limits<int>::max();
}

void Scheduler::ScheduleRunning(bool decodes) {
  for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
    Sequence* seq = running_[i];
    if (seq == nullptr || seq->step_index >= 0) continue;
    const int remaining = seq->num_tokens() - seq->num_computed_tokens;
    const bool is_decode = remaining == 1 && seq->num_output_tokens() > 0;
    if (is_decode != decodes) continue;
    int num_new = std::min({remaining, budget_, MaxChunk()});
    const bool may_shrink = !decodes && config_.enable_chunked_prefill;
    if (!AllocateOrPreempt(seq, &num_new, may_shrink)) continue;
    AddStepEntry(seq, num_new);
  }
}

bool Scheduler::AllocateOrPreempt(Sequence* seq, int* num_new, bool may_shrink) {
  while (true) {
    scratch_copies_.clear();
    if (kv_->Allocate(seq->id, *num_new, &scratch_copies_)) {
      for (const BlockCopy& copy : scratch_copies_) copies_.emplace_back(seq, copy);
      return true;
    }
    // A prefill chunk takes what fits before anyone is preempted for it.
    const int fit = may_shrink ? kv_->MaxAllocatableTokens(seq->id) : 0;
    if (fit > 0) {
      *num_new = std::min(*num_new, fit);
      continue;
    }
    Sequence* victim = PickVictim();
    Preempt(victim);
    if (victim == seq) return false;
  }
}

Sequence* Scheduler::PickVictim() const {
  // The least urgent, then the latest arrival (then the highest sample) gives way first.
  Sequence* victim = nullptr;
  for (Sequence* seq : running_) {
    if (seq == nullptr) continue;
    if (victim == nullptr ||
        std::make_tuple(seq->priority(), seq->arrival_order, seq->sample_index) >
            std::make_tuple(victim->priority(), victim->arrival_order, victim->sample_index)) {
      victim = seq;
    }
  }
  TM_CHECK(victim != nullptr, "out of blocks with nothing running");
  return victim;
}

void Scheduler::Preempt(Sequence* seq) {
  // Recompute, not swap: the KV is dropped and rebuilt from the tokens, cheaply where its
  // full blocks survive in the prefix cache.
  kv_->Free(seq->id);
  if (seq->step_index >= 0) {
    StepEntry& entry = step_[seq->step_index];
    entry.is_removed = true;
    budget_ += entry.num_new;
    seq->step_index = -1;
  }
  running_[seq->running_index] = nullptr;
  seq->running_index = -1;
  --num_running_;
  num_running_slots_ -= SlotsOf(seq);
  seq->num_computed_tokens = 0;
  seq->status = SequenceStatus::kPreempted;
  ++seq->num_preemptions;
  ++stats_.num_preemptions;
  waiting_.PushPreempted(seq);
  plan_.preempted.push_back({seq->id, seq->request_id, seq->sample_index});
}

void Scheduler::AdmitWaiting(double now_s) {
  while (budget_ > 0) {
    Sequence* seq = waiting_.Peek(now_s);
    if (seq == nullptr) return;
    // Head-of-line: when the next in policy order does not fit, nobody jumps ahead of it.
    if (num_running_slots_ + SlotsOf(seq) > config_.max_num_seqs) return;
    if (!TryAdmit(seq)) return;
  }
}

bool Scheduler::TryAdmit(Sequence* seq) {
  const PrefixMatch match = kv_->MatchPrefix(seq->token_ids, seq->spec->cache_salt);
  const int remaining = seq->num_tokens() - match.num_cached_tokens;
  int num_new = std::min({remaining, budget_, MaxChunk()});
  if (num_new < remaining && !config_.enable_chunked_prefill) return false;
  const int reserve = num_running_ == 0 ? 0 : watermark_blocks_;
  const int available = kv_->num_available_blocks() - reserve;
  if (kv_->NumBlocksToAdd(match, num_new) > available) {
    if (!config_.enable_chunked_prefill) return false;
    // New tokens start on a block boundary after the hits: whole blocks of them fit.
    const int spare_blocks = available - kv_->NumBlocksToAdd(match, 0);
    num_new = std::min(num_new, spare_blocks * kv_->block_size());
    if (num_new <= 0) return false;
  }
  TM_CHECK(kv_->AddSequence(seq->id, match, num_new, reserve), "admission capacity mismatch");
  waiting_.Pop(seq);
  seq->num_computed_tokens = match.num_cached_tokens;
  if (!seq->was_admitted) {
    seq->was_admitted = true;
    seq->num_cached_prompt_tokens = std::min(match.num_cached_tokens, seq->num_prompt_tokens);
    stats_.num_cached_prompt_tokens += seq->num_cached_prompt_tokens;
  }
  seq->status = SequenceStatus::kRunning;
  seq->running_index = static_cast<int>(running_.size());
  running_.push_back(seq);
  ++num_running_;
  num_running_slots_ += SlotsOf(seq);
  AddStepEntry(seq, num_new);
  return true;
}

void Scheduler::AddStepEntry(Sequence* seq, int num_new) {
  StepEntry entry;
  entry.seq = seq;
  entry.start = seq->num_computed_tokens;
  entry.num_new = num_new;
  const bool reaches_end = entry.start + num_new == seq->num_tokens();
  entry.num_samples = reaches_end ? SlotsOf(seq) : 0;
  entry.is_decode = reaches_end && num_new == 1 && seq->num_output_tokens() > 0;
  seq->step_index = static_cast<int>(step_.size());
  step_.push_back(entry);
  budget_ -= num_new;
}

void Scheduler::BuildPlan() {
  plan_.sequences.reserve(step_.size());
  for (const StepEntry& e : step_) {
    if (e.is_removed) continue;
    const Sequence& seq = *e.seq;
    ScheduledSequence& s = plan_.sequences.emplace_back();
    s.seq_id = seq.id;
    s.request_id = seq.request_id;
    s.sample_index = seq.sample_index;
    s.start_position = e.start;
    s.num_new_tokens = e.num_new;
    s.num_samples = e.num_samples;
    s.is_decode = e.is_decode;
    s.new_token_ids = std::span<const int32_t>(seq.token_ids).subspan(e.start, e.num_new);
    // Taken last: admissions above may have moved the KV tables.
    s.block_table = kv_->block_table(seq.id);
    plan_.num_batched_tokens += e.num_new;
  }
  for (const auto& [owner, copy] : copies_) {
    // A preempted owner's destination block went back to the pool: no copy for it.
    if (owner->step_index >= 0) plan_.block_copies.push_back(copy);
  }
}

void Scheduler::CompactRunning() {
  size_t out = 0;
  for (Sequence* seq : running_) {
    if (seq == nullptr) continue;
    seq->running_index = static_cast<int>(out);
    running_[out++] = seq;
  }
  running_.resize(out);
}

}  // namespace tokenmill
