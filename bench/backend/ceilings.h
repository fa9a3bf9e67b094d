// This machine's ceilings, measured once per process: the memory read bandwidth of all
// cores (what a decode GEMV can at best stream) and the FMA rate of all cores (what a
// GEMM can at best compute). Benchmarks report their figures as fractions of these.
#pragma once

#include <benchmark/benchmark.h>
#include <time.h>

#include <chrono>
#include <string>

namespace tokenmill::bench {

// Wall seconds of a benchmark loop, and the CPU seconds of the calling thread: for a
// single-threaded run on a machine shared with other jobs the latter is the kernel's own
// time, which the wall clock is not.
struct LoopSeconds {
  double wall;
  double cpu;
};

inline double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Runs the benchmark loop and times it, so counters can be plain rates (Google
// Benchmark's kIsRate would print a "/s" after every ratio too).
template <typename Fn>
LoopSeconds TimedLoop(benchmark::State& state, Fn&& body) {
  const double cpu0 = ThreadCpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
          ThreadCpuSeconds() - cpu0};
}

// counters[name] = amount / wall seconds * scale; for single-threaded runs also
// counters[name + "_cpu"] = amount / CPU seconds * scale.
inline void SetRate(benchmark::State& state, const std::string& name, double amount,
                    const LoopSeconds& t, bool single_thread, double scale) {
  state.counters[name] = amount / t.wall * scale;
  if (single_thread) state.counters[name + "_cpu"] = amount / t.cpu * scale;
}

// Bytes per second of a read-only sum over 1 GiB on every hardware thread (best of 5).
double ReadBandwidth();
// fp32 FLOP per second of independent FMAs on every hardware thread, with the widest
// vectors the CPU has (AVX-512 or AVX2; 0 without either).
double FmaPeak();

}  // namespace tokenmill::bench
