// This machine's ceilings, measured once per process: the memory read bandwidth of all
// cores (what a decode GEMV can at best stream) and the FMA rate of all cores (what a
// GEMM can at best compute). Benchmarks report their figures as fractions of these.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>

namespace tokenmill::bench {

// Runs the benchmark loop and returns its wall seconds, so counters can be plain rates
// (Google Benchmark's kIsRate would print a "/s" after every ratio too).
template <typename Fn>
double TimedLoop(benchmark::State& state, Fn&& body) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Bytes per second of a read-only sum over 1 GiB on every hardware thread (best of 5).
double ReadBandwidth();
// fp32 FLOP per second of independent FMAs on every hardware thread, with the widest
// vectors the CPU has (AVX-512 or AVX2; 0 without either).
double FmaPeak();

}  // namespace tokenmill::bench
