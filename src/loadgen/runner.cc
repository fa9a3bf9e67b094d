#include "tokenmill/loadgen/runner.h"

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loadgen/rng.h"
#include "loadgen/worker_pool.h"

namespace tokenmill::loadgen {
namespace {

constexpr uint64_t kArrivalStream = 99;

void SleepFor(double seconds) {
  if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// What every client thread of one run shares.
class RunState {
 public:
  RunState(Target& target, const WorkloadGenerator& workload, const RequestBuilder& build,
           const RunOptions& options, Progress* progress)
      : target_(target),
        workload_(workload),
        build_(build),
        options_(options),
        progress_(progress),
        clock_(options.clock),
        start_s_(clock_->NowSeconds()) {}

  double start_s() const { return start_s_; }
  bool stopped() const { return stop_.load(); }
  int64_t NextSessionIndex() { return next_session_.fetch_add(1); }

  // Runs a session's turns in order; `scheduled_s` is when its first turn was due.
  void RunSession(int64_t index, double scheduled_s) {
    try {
      RunSessionTurns(index, scheduled_s);
    } catch (const std::exception& e) {
      Fail(absl::InternalError(absl::StrCat("client thread: ", e.what())));
    }
  }

  absl::StatusOr<RunResult> Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.ok()) return error_;
    result_.start_s = start_s_;
    result_.end_s = clock_->NowSeconds();
    return std::move(result_);
  }

 private:
  // A request slot under the bounds; false once the run is over.
  bool Claim() {
    if (stop_.load()) return false;
    if (options_.duration_s > 0 && clock_->NowSeconds() - start_s_ >= options_.duration_s) {
      stop_.store(true);
      return false;
    }
    if (options_.num_requests > 0 && issued_.fetch_add(1) >= options_.num_requests) {
      stop_.store(true);
      return false;
    }
    return true;
  }

  void Fail(const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.ok()) error_ = status;
    stop_.store(true);
  }

  void RunSessionTurns(int64_t index, double scheduled_s) {
    const Session session = workload_.MakeSession(index);
    bool counted = false;
    for (int t = 0; t < static_cast<int>(session.turns.size()); ++t) {
      if (t > 0) SleepFor(session.turns[t].think_before_s);
      if (!Claim()) return;
      if (!counted) {
        counted = true;
        std::lock_guard<std::mutex> lock(mu_);
        ++result_.num_sessions;
        if (session.truncated) ++result_.num_truncated_sessions;
      }
      auto request = build_(session, t);
      if (!request.ok()) {
        Fail(request.status());
        return;
      }
      RequestSample sample;
      sample.session = index;
      sample.turn = t;
      sample.prompt_tokens = session.turns[t].prompt_tokens;
      sample.max_tokens = session.turns[t].max_tokens;
      sample.scheduled_s = t == 0 ? scheduled_s : clock_->NowSeconds();
      sample.result = target_.Send(*request);
      if (progress_ != nullptr) {
        progress_->RequestDone(sample.result.ok(), sample.result.output_tokens,
                               clock_->NowSeconds());
      }
      std::lock_guard<std::mutex> lock(mu_);
      result_.samples.push_back(std::move(sample));
    }
  }

  Target& target_;
  const WorkloadGenerator& workload_;
  const RequestBuilder& build_;
  const RunOptions& options_;
  Progress* progress_;
  const Clock* clock_;
  const double start_s_;
  std::atomic<int64_t> next_session_{0};
  std::atomic<int64_t> issued_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  RunResult result_;
  absl::Status error_;
};

void RunClosedLoop(RunState& state, int concurrency, const Clock* clock) {
  std::vector<std::thread> clients;
  clients.reserve(concurrency);
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&state, clock] {
      while (!state.stopped()) state.RunSession(state.NextSessionIndex(), clock->NowSeconds());
    });
  }
  for (std::thread& t : clients) t.join();
}

void RunOpenLoop(RunState& state, const RunOptions& options) {
  Rng rng(options.arrival_seed, kArrivalStream);
  WorkerPool pool(options.max_concurrency);
  const Clock* clock = options.clock;
  double due_s = state.start_s();  // the first session arrives at once
  for (int64_t i = 0; !state.stopped(); ++i) {
    if (options.num_requests > 0 && i >= options.num_requests) break;
    if (options.duration_s > 0 && due_s - state.start_s() >= options.duration_s) break;
    SleepFor(due_s - clock->NowSeconds());
    pool.Submit([&state, i, due_s] { state.RunSession(i, due_s); });
    due_s += rng.Exponential(1.0 / options.load.value);
  }
  pool.Join();
}

}  // namespace

std::string LoadPointName(const LoadPoint& p) {
  if (p.mode == LoadMode::kConcurrency) {
    return absl::StrCat("concurrency ", static_cast<int64_t>(p.value));
  }
  return absl::StrFormat("rate %g req/s", p.value);
}

absl::StatusOr<RunResult> RunLoad(Target& target, const WorkloadGenerator& workload,
                                  const RequestBuilder& build, const RunOptions& options,
                                  Progress* progress, const std::string& label) {
  if (options.num_requests <= 0 && options.duration_s <= 0) {
    return absl::InvalidArgumentError("give --requests or --duration (a bound for the run)");
  }
  if (options.load.value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(LoadPointName(options.load), ": must be > 0"));
  }
  RunState state(target, workload, build, options, progress);
  if (progress != nullptr) {
    progress->Start(label, options.num_requests, options.duration_s, state.start_s());
  }
  if (options.load.mode == LoadMode::kConcurrency) {
    RunClosedLoop(state, static_cast<int>(options.load.value), options.clock);
  } else {
    RunOpenLoop(state, options);
  }
  auto result = state.Finish();
  if (progress != nullptr) progress->Finish(options.clock->NowSeconds());
  return result;
}

}  // namespace tokenmill::loadgen
