// Engine lifecycle, the inbox and admission. The step itself is in engine_step.cc.
#include "tokenmill/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "engine/live_request.h"
#include "tokenmill/core/status.h"

namespace tokenmill {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options,
                                                       std::unique_ptr<ModelExecutor> executor,
                                                       const Clock* clock) {
  if (executor == nullptr) return absl::InvalidArgumentError("engine: no model executor");
  SchedulerConfig sc = options.scheduler;
  sc.max_model_len = std::min(sc.max_model_len, executor->config().max_position_embeddings);
  sc.max_num_batched_tokens = std::min(sc.max_num_batched_tokens, executor->max_num_tokens());
  sc.max_num_seqs = std::min(sc.max_num_seqs, executor->max_num_logits());
  if (!sc.enable_chunked_prefill) sc.max_model_len = std::min(sc.max_model_len, sc.max_num_batched_tokens);
  TM_RETURN_IF_ERROR(sc.Validate());
  KvCacheConfig kc;
  kc.num_blocks = executor->num_kv_blocks();
  kc.block_size = executor->block_size();
  kc.enable_prefix_caching = options.enable_prefix_caching;
  TM_RETURN_IF_ERROR(kc.Validate());
  if (options.max_pending_requests < 0) {
    return absl::InvalidArgumentError("engine.max_pending_requests must be >= 0");
  }
  TM_RETURN_IF_ERROR(options.accounting.cost.Validate());
  EngineOptions effective = options;
  effective.scheduler = sc;
  std::unique_ptr<Engine> engine(new Engine(effective, std::move(executor), clock));
  engine->kv_ = std::make_unique<KvCacheManager>(kc);
  engine->scheduler_ = std::make_unique<Scheduler>(sc, engine->kv_.get(), clock);
  engine->max_seq_len_ = engine->scheduler_->max_seq_len();
  engine->probe_ = std::make_unique<metrics::StepProbe>(*clock, options.accounting.energy_meter);
  engine->cost_model_ = std::make_unique<metrics::CostModel>(options.accounting.cost);
  engine->PublishStats();
  engine->thread_ = std::thread([e = engine.get()] { e->Run(); });
  spdlog::info("engine: {}; max_num_seqs {}, max_num_batched_tokens {}, max_seq_len {}",
               engine->executor_->Describe(), sc.max_num_seqs, sc.max_num_batched_tokens,
               engine->max_seq_len_);
  return engine;
}

Engine::Engine(const EngineOptions& options, std::unique_ptr<ModelExecutor> executor,
               const Clock* clock)
    : options_(options), executor_(std::move(executor)), clock_(clock) {}

Engine::~Engine() { Shutdown(); }

absl::Status Engine::ValidateRequest(const EngineRequest& r) const {
  if (r.prompt_ids.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  const int vocab = executor_->config().vocab_size;
  for (size_t i = 0; i < r.prompt_ids.size(); ++i) {
    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", r.prompt_ids[i],
                                                     " at index ", i, " is outside [0, ",
                                                     vocab, ")"));
    }
  }
  if (r.n < 1 || r.n > options_.scheduler.max_num_seqs) {
    return absl::InvalidArgumentError(
        absl::StrCat("n: ", r.n, " is outside [1, ", options_.scheduler.max_num_seqs, "]"));
  }
  TM_RETURN_IF_ERROR(r.sampling.Validate());
  for (int32_t id : r.sampling.stop_token_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop_token_ids: ", id, " is outside [0, ", vocab, ")"));
    }
  }
  if (static_cast<int>(r.prompt_ids.size()) >= max_seq_len_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt: ", r.prompt_ids.size(), " tokens leave no room to generate; the context is ",
        max_seq_len_, " tokens"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Submit(EngineRequest request) {
  TM_RETURN_IF_ERROR(ValidateRequest(request));
  std::shared_ptr<RequestStream> stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.ok()) {
      return absl::UnavailableError(absl::StrCat(failure_.message(), "; not accepting requests"));
    }
    if (stop_ || draining_.load()) {
      return absl::UnavailableError("engine is draining or shut down; not accepting requests");
    }
    if (options_.max_pending_requests > 0 && num_pending_ >= options_.max_pending_requests) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "queue full: ", num_pending_, " requests pending (max_pending_requests)"));
    }
    const RequestId rid = next_request_id_++;
    if (request.id.empty()) request.id = absl::StrCat("req-", rid);
    if (live_ids_.contains(request.id)) {
      return absl::AlreadyExistsError(absl::StrCat("request id '", request.id, "' is live"));
    }
    live_ids_[request.id] = rid;
    ++num_pending_;
    stream = std::make_shared<RequestStream>(request.id, request.n);
    InboxItem item;
    item.kind = InboxItem::kSubmit;
    item.rid = rid;
    item.arrival_s = clock_->NowSeconds();
    item.request = std::move(request);
    item.stream = stream;
    inbox_.push_back(std::move(item));
  }
  cv_.notify_one();
  return stream;
}

void Engine::Cancel(const std::string& request_id, FinishReason reason) {
  TM_CHECK(IsAbort(reason), "Cancel with non-abort reason ", FinishReasonName(reason));
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_ids_.find(request_id);
    if (it == live_ids_.end()) return;
    InboxItem item;
    item.kind = InboxItem::kCancel;
    item.rid = it->second;
    item.reason = reason;
    inbox_.push_back(std::move(item));
  }
  cv_.notify_one();
}

void Engine::StopSequence(const std::string& request_id, int index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_ids_.find(request_id);
    if (it == live_ids_.end()) return;
    InboxItem item;
    item.kind = InboxItem::kStopSequence;
    item.rid = it->second;
    item.index = index;
    inbox_.push_back(std::move(item));
  }
  cv_.notify_one();
}

void Engine::StartDrain() {
  draining_.store(true);
  spdlog::info("engine: draining; new requests are refused");
}

bool Engine::WaitUntilIdle(double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                           [&] { return num_pending_ == 0 && stats_.num_pending_requests == 0; });
}

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

absl::Status Engine::health() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

void Engine::AddFailureObserver(FailureObserver observer) {
  absl::Status failure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_.ok()) {
      failure_observers_.push_back(std::move(observer));
      return;
    }
    failure = failure_;
  }
  observer(failure);
}

void Engine::PublishStats() {
  if (has_failed_) {
    // A failed engine's scheduler may be mid-step: nothing of it is read again. Nothing
    // runs or waits any more; the KV figures stay as last published.
    if (metrics::ServingMetrics* m = options_.accounting.metrics; m != nullptr) {
      m->SetSchedulerState(0, 0);
    }
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_running = stats_.num_waiting = 0;
    stats_.num_pending_requests = num_pending_;
    stats_.num_steps = num_steps_;
    stats_.num_failed_steps = num_failed_steps_;
    if (num_pending_ == 0) idle_cv_.notify_all();
    return;
  }
  const SchedulerStats ss = scheduler_->stats();
  const KvStats kv = kv_->stats();
  // Gauges follow every change, not only completed steps: an abort or a failed step that
  // leaves the engine idle must not leave "1 running, KV 40% used" behind in /metrics.
  // Preemptions of a plan that failed count too.
  if (metrics::ServingMetrics* m = options_.accounting.metrics; m != nullptr) {
    m->SetSchedulerState(ss.num_running_sequences, ss.num_waiting_sequences);
    m->SetKvCacheUsage(kv.num_used_blocks, kv.num_blocks);
    if (ss.num_preemptions > last_preemptions_) {
      m->RecordPreemptions(ss.num_preemptions - last_preemptions_);
    }
  }
  last_preemptions_ = ss.num_preemptions;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.scheduler = ss;
  stats_.kv = kv;
  stats_.num_running = ss.num_running_sequences;
  stats_.num_waiting = ss.num_waiting_sequences;
  stats_.num_pending_requests = num_pending_;
  stats_.num_steps = num_steps_;
  stats_.num_failed_steps = num_failed_steps_;
  // Idle only once the published figures show it (blocks freed, counts settled).
  if (num_pending_ == 0) idle_cv_.notify_all();
}

void Engine::Run() {
  try {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        const bool has_work = scheduler_->has_unfinished_requests();
        if (!has_work) {
          cv_.wait(lock, [&] { return stop_ || !inbox_.empty(); });
        }
        if (stop_) break;
      }
      DrainInbox();
      if (!RunStep() && scheduler_->has_unfinished_requests()) {
        // Work exists but nothing could run (e.g. waiting on a deadline to pass): sleep
        // briefly instead of spinning; a new submission or cancel wakes us.
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(1),
                     [&] { return stop_ || !inbox_.empty(); });
      }
    }
    DrainInbox();
    AbortAll(FinishReason::kCancelled);
  } catch (const std::exception& e) {
    // The thread entry point's catch-all (STYLE.md section 3): a stray exception must
    // neither take the process down silently nor leave requests hanging.
    FailEngine(e.what());
    return;
  } catch (...) {
    FailEngine("unknown exception");
    return;
  }
  PublishStats();
}

void Engine::FailEngine(const std::string& what) {
  const absl::Status cause =
      absl::InternalError(absl::StrCat("engine failed: step thread died: ", what));
  std::vector<FailureObserver> observers;
  std::deque<InboxItem> inbox;
  int num_pending = 0;
  {
    // From here on Submit() refuses, so no submission can slip in behind `inbox`.
    std::lock_guard<std::mutex> lock(mu_);
    failure_ = cause;
    observers.swap(failure_observers_);
    inbox.swap(inbox_);
    num_pending = num_pending_;
  }
  has_failed_ = true;
  spdlog::error(
      "engine: step thread died: {}; failing {} pending requests and refusing new ones (the "
      "engine cannot run again)",
      what, num_pending);
  // Observers first, so that a server reports unready before its clients see the error.
  for (const FailureObserver& observer : observers) {
    try {
      observer(cause);
    } catch (...) {
      spdlog::error("engine: a failure observer threw");
    }
  }
  try {
    // The step that threw, if one did, was measured up to here: it goes to its requests.
    if (is_step_measured_) {
      const metrics::StepSample sample = EndStepMeasurement();
      ++num_failed_steps_;
      if (options_.accounting.metrics != nullptr) {
        options_.accounting.metrics->RecordFailedStep(sample);
      }
    }
    FailAllPending(cause, std::move(inbox));
  } catch (...) {
    spdlog::critical("engine: failing the pending requests threw too; some may never end");
  }
  PublishStats();
}

// The scheduler and the KV cache may be mid-step, so they are not used: every request's
// remaining samples end here, its usage and record from what the engine itself tracked.
void Engine::FailAllPending(const absl::Status& error, std::deque<InboxItem> inbox) {
  for (std::deque<InboxItem>* items : {&admitting_, &inbox}) {
    for (InboxItem& item : *items) {
      if (item.kind == InboxItem::kSubmit) requests_[item.rid] = MakeLiveRequest(item);
    }
    items->clear();
  }
  std::vector<RequestId> rids;
  for (auto& [rid, lr] : requests_) {
    rids.push_back(rid);
    if (lr->error.ok()) lr->error = error;  // a failed step's own error, when it had one
    for (int i = 0; i < lr->request.n; ++i) {
      if (lr->finished[i]) continue;
      TokenEvent ev;
      ev.index = i;
      ev.finished = true;
      ev.finish_reason = lr->stopped[i] ? FinishReason::kStop : FinishReason::kError;
      if (ev.finish_reason == FinishReason::kError) ev.status = lr->error;
      Queue(lr.get(), std::move(ev));
    }
  }
  std::sort(rids.begin(), rids.end());  // ledger lines in arrival order
  FlushEvents(rids, clock_->NowSeconds());
}

void Engine::DrainInbox() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    TM_CHECK(admitting_.empty(), "inbox items left from an earlier drain");
    admitting_.swap(inbox_);
  }
  while (!admitting_.empty()) {
    InboxItem item = std::move(admitting_.front());
    admitting_.pop_front();
    switch (item.kind) {
      case InboxItem::kSubmit:
        AdmitNew(std::move(item));
        break;
      case InboxItem::kCancel:
        scheduler_->AbortRequest(item.rid, item.reason);
        break;
      case InboxItem::kStopSequence: {
        auto it = requests_.find(item.rid);
        if (it == requests_.end()) break;
        LiveRequest& lr = *it->second;
        if (item.index < 0 || item.index >= lr.request.n) break;
        lr.stopped[item.index] = true;
        // The scheduler ends requests, not single samples: end the request once every
        // sample is stopped or finished; until then a stopped sample's tokens are dropped.
        bool all_done = true;
        for (int i = 0; i < lr.request.n; ++i) all_done &= lr.stopped[i] || lr.finished[i];
        if (all_done) scheduler_->AbortRequest(item.rid, FinishReason::kCancelled);
        break;
      }
    }
  }
}

std::unique_ptr<Engine::LiveRequest> Engine::MakeLiveRequest(InboxItem& item) const {
  auto lr = std::make_unique<LiveRequest>();
  lr->rid = item.rid;
  lr->request = std::move(item.request);
  lr->stream = std::move(item.stream);
  lr->arrival_s = item.arrival_s;
  const int n = lr->request.n;
  lr->finished.assign(n, false);
  lr->stopped.assign(n, false);
  lr->reasons.assign(n, FinishReason::kNone);
  lr->sample_last_token_s.assign(n, -1.0);
  return lr;
}

void Engine::AdmitNew(InboxItem item) {
  const RequestId rid = item.rid;
  // Known to requests_ before anything here can throw, so that FailEngine fails it.
  LiveRequest& lr = *(requests_[rid] = MakeLiveRequest(item));
  const EngineRequest& r = lr.request;
  for (int i = 0; i < r.n; ++i) {
    SamplingParams sp = r.sampling;
    // Samples of one seeded request are distinct but reproducible.
    if (sp.seed.has_value()) sp.seed = *sp.seed + static_cast<uint64_t>(i);
    auto sampler = Sampler::Create(sp, r.prompt_ids);
    TM_CHECK(sampler.ok(), "sampling params validated in Submit: ", sampler.status().ToString());
    lr.samplers.push_back(std::move(sampler).value());
  }
  RequestSpec spec;
  spec.request_id = rid;
  spec.prompt_token_ids = r.prompt_ids;
  spec.n = r.n;
  spec.max_tokens = r.sampling.max_tokens;
  spec.stop_token_ids = r.sampling.stop_token_ids;
  if (!r.sampling.ignore_eos) {
    for (int id : executor_->config().eos_token_ids) spec.stop_token_ids.push_back(id);
  }
  spec.priority = r.priority;
  spec.tenant = r.tenant;
  spec.deadline_s = r.deadline_s;
  const absl::Status s = scheduler_->AddRequest(std::move(spec));
  if (s.ok()) return;
  // Submit() validated what it could; anything left (e.g. a limit of the scheduler's own)
  // still ends the request cleanly with one finished event per sample.
  for (int i = 0; i < r.n; ++i) {
    TokenEvent ev;
    ev.index = i;
    ev.finished = true;
    ev.finish_reason = FinishReason::kError;
    ev.status = s;
    if (i + 1 == r.n) ev.usage = RequestUsage{};
    lr.stream->Push(std::move(ev));
  }
  std::lock_guard<std::mutex> lock(mu_);
  live_ids_.erase(r.id);
  --num_pending_;
  requests_.erase(rid);  // last: `lr` and `r` die here
  idle_cv_.notify_all();
}

}  // namespace tokenmill
