#include "periodic_thread.h"

#include <exception>

#include "absl/time/time.h"
#include "spdlog/spdlog.h"

namespace tokenmill::metrics::internal {

PeriodicThread::PeriodicThread(double interval_s, std::function<void()> fn)
    : interval_s_(interval_s), fn_(std::move(fn)), thread_([this] { Loop(); }) {}

PeriodicThread::~PeriodicThread() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void PeriodicThread::Loop() {
  const absl::Duration interval = absl::Seconds(interval_s_);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), interval)) return;
    }
    // Thread entry point: a stray exception must not terminate the process (STYLE.md 3).
    try {
      fn_();
    } catch (const std::exception& e) {
      spdlog::error("metrics sampler: {}", e.what());
    } catch (...) {
      spdlog::error("metrics sampler: unknown exception");
    }
  }
}

}  // namespace tokenmill::metrics::internal
