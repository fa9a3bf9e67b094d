// A small persistent pool of worker threads for the CPU backend's ops.
//
// Run() hands out task indices [0, num_tasks) from a shared counter to the caller and
// the workers and returns once every task has finished. Between jobs workers spin for a
// few microseconds (the next op of a step usually follows at once), then park on a
// condition variable, so an idle backend burns no CPU.
//
// Thread-safety: Run() may be called by one thread at a time; tasks must not call Run().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"

namespace tokenmill::cpu {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread: num_threads - 1 workers are started.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(task, thread) once for every task in [0, num_tasks); `thread` in
  // [0, num_threads) identifies the executing thread (0 = caller) for per-thread scratch.
  // Which thread runs which task is unspecified.
  void Run(int64_t num_tasks, absl::FunctionRef<void(int64_t task, int thread)> fn);

 private:
  struct Job {
    absl::FunctionRef<void(int64_t, int)> fn;
    int64_t num_tasks;
  };
  void WorkerLoop(int thread);
  void RunTasks(const Job& job, int thread);

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const Job* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped (under mu_) for every job; workers spin on it before parking.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  // Workers that have not yet finished the current job.
  std::atomic<int> busy_workers_{0};
};

}  // namespace tokenmill::cpu
