// Internal: runs a callback every `interval_s` on a background thread until destroyed.
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tokenmill::metrics::internal {

class PeriodicThread {
 public:
  // Requires: interval_s > 0. The first call happens one interval after construction.
  PeriodicThread(double interval_s, std::function<void()> fn);
  // Stops promptly (does not wait out the interval) and joins.
  ~PeriodicThread();
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

 private:
  void Loop();

  const double interval_s_;
  const std::function<void()> fn_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tokenmill::metrics::internal
