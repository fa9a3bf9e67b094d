#include "backend/cpu/thread_pool.h"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tokenmill::cpu {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> bad_thread{0};
      pool.Run(n, [&](int64_t task, int thread) {
        hits[task].fetch_add(1);
        if (thread < 0 || thread >= threads) bad_thread.fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << threads << " " << n;
      EXPECT_EQ(bad_thread.load(), 0);
    }
  }
}

TEST(ThreadPoolTest, ManyConsecutiveJobsSeeTheirOwnState) {
  ThreadPool pool(3);
  int64_t total = 0;
  for (int job = 0; job < 2000; ++job) {
    std::vector<int64_t> partial(pool.num_threads(), 0);
    pool.Run(job % 7 + 1, [&](int64_t task, int thread) { partial[thread] += task + job; });
    for (int64_t p : partial) total += p;
  }
  int64_t expected = 0;
  for (int job = 0; job < 2000; ++job) {
    for (int64_t t = 0; t < job % 7 + 1; ++t) expected += t + job;
  }
  EXPECT_EQ(total, expected);
}

TEST(ThreadPoolTest, WorkersRunTasksInParallel) {
  ThreadPool pool(2);
  std::set<std::thread::id> ids;
  std::mutex mu;
  // Each task waits until two tasks have started, so both threads must take part.
  std::atomic<int> started{0};
  pool.Run(2, [&](int64_t, int) {
    started.fetch_add(1);
    while (started.load() < 2) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 2u);
}

double ProcessCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// After a job, workers spin for microseconds and then park: an idle pool of 4 threads
// must not burn a core (a busy-waiting one would use ~4 x 0.3 s here).
TEST(ThreadPoolTest, IdleWorkersPark) {
  ThreadPool pool(4);
  pool.Run(8, [](int64_t, int) {});
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double before = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LT(ProcessCpuSeconds() - before, 0.05);
}

}  // namespace
}  // namespace tokenmill::cpu
