// Scheduler: the continuous-batching policy. Pure logic: no threads, no I/O, no backend.
// It decides each step who runs and how many tokens, drives the KvCacheManager, and
// keeps every sequence's tokens and lifecycle. docs/scheduling.md states the policy.
//
// The engine's step loop:
//   sched.AddRequest(spec) / sched.AbortRequest(id, reason)   between steps, any number
//   const StepPlan& plan = sched.Schedule();                   aborts, deadlines, then plan
//   ... perform plan.block_copies, run plan.sequences on the backend, sample
//       plan.sequences[i].num_samples tokens per sequence ...
//   const StepOutcome& out = sched.OnStepDone(sampled);        append tokens, finish
//   ... emit out.updates as token events; close out.finished_requests and
//       plan.finished_requests ...
// If the step cannot be completed, call DiscardStep() instead of OnStepDone().
//
// Finish detection boundary: the scheduler ends a sequence on token ids (stop ids,
// max_tokens, max context). Anything that needs text (stop strings) is the engine's or
// api's: it calls AbortRequest or finishes via a stop id it knows.
//
// Ownership: `kv` and `clock` outlive the Scheduler, and nothing else mutates `kv` while
// the Scheduler lives. Not thread-safe: one caller (the engine's step thread).
#pragma once

#include <cstdint>
#include <memory>
#include <queue>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/scheduler/scheduler_config.h"
#include "tokenmill/scheduler/sequence.h"
#include "tokenmill/scheduler/step_plan.h"
#include "tokenmill/scheduler/waiting_queue.h"

namespace tokenmill {

// One sampled token, now appended to its sequence.
struct SequenceUpdate {
  SeqId seq_id = 0;
  RequestId request_id = 0;
  int sample_index = 0;
  int32_t token_id = 0;
  FinishReason finish_reason = FinishReason::kNone;  // kNone: the sequence goes on
};

// Valid until the next non-const call on the Scheduler.
struct StepOutcome {
  std::vector<SequenceUpdate> updates;       // plan order; a leader before its forks
  std::vector<RequestId> finished_requests;  // every sequence of these has now ended
};

// Figures for metrics. Gauges are current; counters are totals since construction.
struct SchedulerStats {
  int num_waiting_sequences = 0;  // queued, preempted included (not parked forks)
  int num_running_sequences = 0;
  int64_t num_steps = 0;                 // plans with work
  int64_t num_prefill_tokens = 0;        // tokens computed in prefill chunks (recompute too)
  int64_t num_decode_tokens = 0;         // tokens computed as decodes
  int64_t num_generated_tokens = 0;      // tokens sampled and appended
  int64_t num_cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache
  int64_t num_preemptions = 0;
  int64_t num_finished_requests = 0;  // every sample ended normally or by abort
  int64_t num_aborted_sequences = 0;
};

class Scheduler {
 public:
  // Requires: config.Validate().ok().
  Scheduler(const SchedulerConfig& config, KvCacheManager* kv, const Clock* clock);
  ~Scheduler();

  // Queues a request (its n sequences). InvalidArgument naming the field for an empty
  // prompt, n outside [1, max_num_seqs], max_tokens < 1, min_tokens < 0, or a prompt with
  // no room to generate (>= max_seq_len() tokens); AlreadyExists for a live request id.
  absl::Status AddRequest(RequestSpec spec);

  // Ends every sequence of the request at the next Schedule(), freeing their blocks and
  // listing them in StepPlan::aborted. Requires: IsAbort(reason). False if the request is
  // unknown or already ended. A step in flight still completes for it.
  bool AbortRequest(RequestId request_id, FinishReason reason);

  // Plans the next step. Applies pending aborts and due deadlines first. Returns a plan
  // without sequences when there is nothing to run. Requires: the previous plan with work
  // was completed by OnStepDone() or DiscardStep().
  const StepPlan& Schedule();

  // Completes the last plan: marks its tokens computed (caching full blocks), appends the
  // sampled tokens (flattened: num_samples per plan entry, in plan order), forks n > 1
  // samples after their prompt, and ends sequences that hit a stop id, max_tokens or the
  // maximum length. Requires: sampled_token_ids.size() == sum of num_samples.
  const StepOutcome& OnStepDone(std::span<const int32_t> sampled_token_ids);

  // Forgets the last plan as if it never ran. Sequences that were to copy a shared block
  // are preempted (their block no longer holds valid KV); the others are unaffected.
  void DiscardStep();

  // The sequence, or nullptr. Sequences of ended requests stay readable until the next
  // Schedule(). The pointer is valid until then too.
  const Sequence* FindSequence(SeqId seq_id) const;
  // Sequence ids of a live request, sample order; empty if unknown.
  std::vector<SeqId> SequencesOf(RequestId request_id) const;

  bool has_unfinished_requests() const { return !requests_.empty(); }
  int num_unfinished_requests() const { return static_cast<int>(requests_.size()); }
  // Longest sequence allowed: min(max_model_len, KV pool capacity in tokens).
  int max_seq_len() const { return max_seq_len_; }
  const SchedulerConfig& config() const { return config_; }
  const KvCacheManager& kv() const { return *kv_; }
  SchedulerStats stats() const;

  // KV invariants plus the scheduler's own: running sequences and only they hold blocks,
  // computed counts agree with the KV tables, queue and slot counts add up.
  absl::Status CheckInvariants() const;

 private:
  struct RequestState {
    RequestSpec spec;
    std::vector<std::unique_ptr<Sequence>> seqs;  // by sample index
    int num_live = 0;
  };
  struct StepEntry {
    Sequence* seq = nullptr;
    int start = 0;
    int num_new = 0;
    int num_samples = 0;
    bool is_decode = false;
    bool is_removed = false;  // preempted later in the same Schedule()
  };

  // Schedule() phases (scheduler.cc).
  void ApplyAborts(double now_s);
  void ScheduleRunning(bool decodes);
  bool AllocateOrPreempt(Sequence* seq, int* num_new, bool may_shrink);
  void AdmitWaiting(double now_s);
  bool TryAdmit(Sequence* seq);
  void AddStepEntry(Sequence* seq, int num_new);
  void BuildPlan();
  Sequence* PickVictim() const;
  void Preempt(Sequence* seq);

  // Completion (scheduler_step_done.cc).
  void ForkParked(Sequence* leader, std::vector<Sequence*>* forks);
  void AppendToken(Sequence* seq, int32_t token);
  FinishReason CheckFinish(const Sequence& seq, int32_t token) const;
  void EndSequence(Sequence* seq, FinishReason reason);
  void RetireRequest(RequestId request_id, std::vector<RequestId>* finished);
  void AbortNow(RequestId request_id, uint64_t arrival_order, FinishReason reason);
  void CompactRunning();

  static int SlotsOf(const Sequence* seq) { return 1 + static_cast<int>(seq->parked_forks.size()); }
  int MaxChunk() const;

  SchedulerConfig config_;
  KvCacheManager* kv_;
  const Clock* clock_;
  int max_seq_len_;
  int watermark_blocks_;

  absl::flat_hash_map<RequestId, std::unique_ptr<RequestState>> requests_;
  absl::flat_hash_map<SeqId, Sequence*> seq_index_;
  std::vector<std::unique_ptr<RequestState>> retired_;  // readable until next Schedule()
  std::vector<Sequence*> running_;  // admission order; nullptr holes until compaction
  int num_running_ = 0;
  int num_running_slots_ = 0;  // running plus parked forks of running leaders
  WaitingQueue waiting_;
  // Aborts and deadlines name the request's arrival too: a request id reused after the
  // request ended must not inherit them.
  struct PendingAbort {
    RequestId request_id;
    uint64_t arrival_order;
    FinishReason reason;
  };
  std::vector<PendingAbort> pending_aborts_;
  using Deadline = std::tuple<double, RequestId, uint64_t>;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<Deadline>> deadlines_;

  // The step being planned or in flight.
  std::vector<StepEntry> step_;
  std::vector<std::pair<Sequence*, BlockCopy>> copies_;
  std::vector<BlockCopy> scratch_copies_;
  int budget_ = 0;
  bool is_step_in_flight_ = false;
  StepPlan plan_;
  StepOutcome outcome_;

  SeqId next_seq_id_ = 1;
  uint64_t next_arrival_ = 0;
  SchedulerStats stats_;
};

}  // namespace tokenmill
