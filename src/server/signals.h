// SIGTERM / SIGINT for the daemon: the first starts a graceful drain, a second one exits at
// once (status 128 + signal). Signals are blocked in every thread and taken by one watcher
// thread with sigwait(), so no handler runs in async-signal context.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace tokenmill {

class ShutdownSignals {
 public:
  // Blocks SIGINT, SIGTERM (and the watcher's private SIGUSR2) in the calling thread and
  // ignores SIGPIPE, then starts the watcher. Call before any other thread starts, so every
  // thread inherits the mask.
  static std::unique_ptr<ShutdownSignals> Install();
  ~ShutdownSignals();  // stops the watcher
  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;

  // Blocks until the first signal; returns its number.
  int WaitForFirst();
  // The first signal received so far, 0 if none (does not block).
  int received() const { return first_.load(); }

 private:
  ShutdownSignals() = default;
  void Run();

  std::atomic<int> first_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace tokenmill
