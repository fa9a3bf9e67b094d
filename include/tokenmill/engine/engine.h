// Engine: the step loop and request lifecycle, the only place where the stages meet
// (DESIGN.md). One thread runs steps; any thread may Submit() and Cancel().
//
// Each step: take new requests and cancellations from the inbox, let the scheduler plan
// (decodes first, chunked prefills, admissions, preemptions, aborts), run the plan on the
// ModelExecutor, sample each sequence's next token, hand the tokens back to the scheduler,
// and push TokenEvents onto each request's RequestStream. Idle (blocked on a condition
// variable) when there is no work.
//
// Request states follow the scheduler's sequences: WAITING -> RUNNING (-> PREEMPTED ->
// RUNNING ...) -> FINISHED (stop, length, context_length) or ABORTED (cancelled,
// deadline, error). Every submitted request gets exactly one finished event per sequence,
// the request's last one carrying its usage.
//
// Failure modes. A step whose executor returns an error fails the requests in that step
// (INTERNAL "step failed: ...") and the engine goes on. An exception escaping the step
// thread (a stray third-party exception, std::bad_alloc) leaves the scheduler and KV state
// unknown, so the engine FAILS FOR GOOD: health() turns INTERNAL "engine failed: ...",
// failure observers run, every pending request (running, waiting, or still in the inbox)
// ends with INTERNAL naming the cause, Submit() answers UNAVAILABLE naming it from then on,
// and the error is logged once. Nothing is retried; the owner (the daemon) exits so that a
// supervisor restarts the process (docs/operations.md).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/engine/model_executor.h"
#include "tokenmill/engine/request.h"
#include "tokenmill/engine/request_stream.h"
#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/metrics/cost_model.h"
#include "tokenmill/metrics/energy_meter.h"
#include "tokenmill/metrics/ledger.h"
#include "tokenmill/metrics/serving_metrics.h"
#include "tokenmill/metrics/step_accounting.h"
#include "tokenmill/scheduler/scheduler.h"

namespace tokenmill {

// The factory's meters: where step time and energy go, what they cost, where finished
// requests are recorded. Pointers are not owned and must outlive the engine; null ones
// are skipped (no meter: energy is unknown, never zero).
struct EngineAccounting {
  metrics::EnergyMeter* energy_meter = nullptr;
  metrics::ServingMetrics* metrics = nullptr;
  metrics::LedgerWriter* ledger = nullptr;
  metrics::CostConfig cost;  // default: no prices, cost 0
};

struct EngineOptions {
  SchedulerConfig scheduler;
  EngineAccounting accounting;
  bool enable_prefix_caching = true;
  // Requests admitted but not finished, beyond which Submit() answers ResourceExhausted at
  // once (a bounded queue instead of collapsing latency). 0: unbounded.
  int max_pending_requests = 0;
};

// What one step did, for observers (metrics, accounting). Sequences are listed with the
// tokens they computed this step.
struct StepRecord {
  double start_s = 0;
  double duration_s = 0;
  int num_prefill_tokens = 0;
  int num_decode_tokens = 0;
  int num_sequences = 0;
  int token_budget = 0;  // max_num_batched_tokens
  struct Share {
    RequestId request_id;
    int num_tokens;
  };
  std::vector<Share> shares;
};

// Called on the step thread after every step that ran. Must be quick and not call back
// into the engine.
using StepObserver = std::function<void(const StepRecord&)>;

// Called once with the cause (INTERNAL "engine failed: ...") when the engine fails for good.
using FailureObserver = std::function<void(const absl::Status&)>;

// Snapshot for stats endpoints and tests; consistent as of the last step.
struct EngineStats {
  int num_running = 0;
  int num_waiting = 0;
  int num_pending_requests = 0;  // submitted, not yet finished
  SchedulerStats scheduler;
  KvStats kv;
  int64_t num_steps = 0;
  int64_t num_failed_steps = 0;  // steps that returned an error or threw
};

class Engine {
 public:
  // Takes ownership of `executor`; `clock` must outlive the engine. Starts the step thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                        std::unique_ptr<ModelExecutor> executor,
                                                        const Clock* clock = &SystemClock::Get());
  ~Engine();  // Shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Errors, at once and with nothing queued: InvalidArgument naming the
  // field (empty prompt, token id outside the vocabulary, sampling values, n),
  // ResourceExhausted (prompt longer than the context, or the pending-request bound),
  // Unavailable (draining, shut down, or failed: the message names the cause),
  // AlreadyExists (live id).
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(EngineRequest request);
  // Ends the request at the next step (finish reason `reason`: kCancelled or kDeadline),
  // freeing its KV blocks. Unknown or finished ids are ignored.
  void Cancel(const std::string& request_id, FinishReason reason = FinishReason::kCancelled);
  // Ends one sequence as stopped (a stop string the front end matched in its text).
  void StopSequence(const std::string& request_id, int index);

  // Refuses new requests from now on (Unavailable); running ones continue.
  void StartDrain();
  bool is_draining() const { return draining_.load(); }
  // Waits until no request is pending; false on timeout.
  bool WaitUntilIdle(double timeout_s);
  // Stops the step thread; every pending request ends with kCancelled. Idempotent.
  void Shutdown();

  // OK while the engine can run steps; once it has failed (see the top of this file),
  // INTERNAL "engine failed: <cause>" for good. Thread-safe.
  absl::Status health() const;
  // Registers `observer`, called once when the engine fails: on the step thread, after
  // health() and Submit() show the failure and before the pending requests are failed, so
  // a server can turn unready before its clients see the error. If the engine has already
  // failed, `observer` runs at once on the calling thread. Observers are kept until the
  // engine is destroyed (capture what outlives it) and must be quick; they may call
  // health() and stats(). Thread-safe.
  void AddFailureObserver(FailureObserver observer);

  EngineStats stats() const;
  const ModelConfig& model_config() const { return executor_->config(); }
  const ModelExecutor& executor() const { return *executor_; }
  int max_seq_len() const { return max_seq_len_; }
  // Set before the first Submit().
  void AddStepObserver(StepObserver observer) { observers_.push_back(std::move(observer)); }

 private:
  struct LiveRequest;
  struct InboxItem;

  Engine(const EngineOptions& options, std::unique_ptr<ModelExecutor> executor,
         const Clock* clock);
  absl::Status ValidateRequest(const EngineRequest& request) const;
  void Run();
  void DrainInbox();
  void AdmitNew(InboxItem item);
  std::unique_ptr<LiveRequest> MakeLiveRequest(InboxItem& item) const;
  bool RunStep();
  void BuildBatch(const StepPlan& plan);
  void BeginStepMeasurement(std::vector<metrics::SequenceWork> work);
  metrics::StepSample EndStepMeasurement();
  void FailStep(const StepPlan& plan, const absl::Status& status);
  void FailEngine(const std::string& cause);
  void FailAllPending(const absl::Status& error, std::deque<InboxItem> inbox);
  void Sample(const StepPlan& plan);
  void EmitOutcome(const StepOutcome& outcome, double now_s);
  void EmitAborts(const StepPlan& plan, double now_s);
  void Queue(LiveRequest* lr, TokenEvent event);
  void FlushEvents(std::span<const RequestId> finished_requests, double now_s);
  RequestUsage UsageOf(LiveRequest& lr, double now_s);
  static void MergeWork(std::vector<metrics::SequenceWork>* work);
  void AbortAll(FinishReason reason);
  void PublishStats();
  void RecordStepMetrics(const metrics::StepSample& sample);
  metrics::RequestRecord MakeRecord(LiveRequest& lr, double now_s);

  EngineOptions options_;
  std::unique_ptr<ModelExecutor> executor_;
  const Clock* clock_;
  int max_seq_len_ = 0;
  std::vector<StepObserver> observers_;

  // Inbox, shared with submitting threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the step thread
  std::condition_variable idle_cv_;  // wakes WaitUntilIdle
  std::deque<InboxItem> inbox_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, RequestId> live_ids_ ABSL_GUARDED_BY(mu_);
  int num_pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // non-OK once failed, for good
  std::vector<FailureObserver> failure_observers_ ABSL_GUARDED_BY(mu_);
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  RequestId next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<bool> draining_{false};

  // Step-thread state.
  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  absl::flat_hash_map<RequestId, std::unique_ptr<LiveRequest>> requests_;
  // Submissions taken from the inbox and not yet admitted: an exception mid-admission must
  // not lose the ones after it (FailEngine fails them).
  std::deque<InboxItem> admitting_;
  BatchPlan batch_;
  std::vector<float> logits_;
  std::vector<int32_t> sampled_;
  // Sampled tokens with their log-probs, keyed by (request, sample index) for this step.
  absl::flat_hash_map<std::pair<RequestId, int>, SampledToken> sampled_info_;
  std::vector<std::pair<LiveRequest*, TokenEvent>> events_;  // this step's, in order
  int64_t num_steps_ = 0;
  int64_t num_failed_steps_ = 0;
  metrics::StepAccountant accountant_;  // per request id
  std::unique_ptr<metrics::StepProbe> probe_;
  // The running step's work, between BeginStepMeasurement and EndStepMeasurement.
  std::vector<metrics::SequenceWork> step_work_;
  bool is_step_measured_ = false;
  bool has_failed_ = false;  // failure_ is set; step-thread copy, read without the lock
  std::unique_ptr<metrics::CostModel> cost_model_;
  KvStats last_kv_stats_;
  int64_t last_preemptions_ = 0;

  std::thread thread_;
};

}  // namespace tokenmill
