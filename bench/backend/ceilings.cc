// Memory-bandwidth and FMA ceilings, also registered as benchmarks of their own.
#include "ceilings.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "backend/cpu/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TM_BENCH_AVX2 __attribute__((target("avx2,fma")))
#define TM_BENCH_AVX512 __attribute__((target("avx512f")))
#endif

namespace tokenmill::bench {
namespace {

constexpr size_t kBufferBytes = size_t{1} << 30;

int Threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

struct Buffer {
  explicit Buffer(size_t bytes) : data(static_cast<float*>(std::aligned_alloc(64, bytes))) {
    std::memset(data.get(), 1, bytes);  // fault every page in before timing
  }
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> data;
};

#ifdef TM_BENCH_AVX2
TM_BENCH_AVX2 float SumRange(const float* p, size_t n) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a = _mm256_add_ps(a, _mm256_load_ps(p + i));
    b = _mm256_add_ps(b, _mm256_load_ps(p + i + 8));
    c = _mm256_add_ps(c, _mm256_load_ps(p + i + 16));
    d = _mm256_add_ps(d, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// 12 independent FMA chains hide the 4-cycle latency on 2 FMA pipes.
TM_BENCH_AVX2 float FmaLoop(int64_t iterations) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  return _mm256_cvtss_f32(s);
}

// Same with 512-bit vectors: 16 FLOP-pairs per instruction. Returns NaN-free garbage.
TM_BENCH_AVX512 float Fma512Loop(int64_t iterations) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  }
  alignas(64) float out[16];
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  _mm512_store_ps(out, s);
  return out[0];
}

bool HasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
#else
float SumRange(const float* p, size_t n) {
  float s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}
float FmaLoop(int64_t) { return 0; }
float Fma512Loop(int64_t) { return 0; }
bool HasAvx512() { return false; }
#endif

// Splits [0, n) floats of `data` over the pool; returns the sum (keeps the loads alive).
float ParallelSum(cpu::ThreadPool& pool, const float* data, size_t n) {
  float partial[64] = {};
  const int64_t tasks = pool.num_threads();
  pool.Run(tasks, [&](int64_t t, int) {
    const size_t begin = n / tasks * t, end = t + 1 == tasks ? n : n / tasks * (t + 1);
    partial[t] = SumRange(data + begin, end - begin);
  });
  float s = 0;
  for (int64_t t = 0; t < tasks; ++t) s += partial[t];
  return s;
}

// Args: threads (0: all).
void BM_MemoryReadSum(benchmark::State& state) {
  Buffer buf(kBufferBytes);
  cpu::ThreadPool pool(state.range(0) > 0 ? static_cast<int>(state.range(0)) : Threads());
  const LoopSeconds t = TimedLoop(state, [&] {
    benchmark::DoNotOptimize(ParallelSum(pool, buf.data.get(), kBufferBytes / 4));
  });
  SetRate(state, "GB/s", static_cast<double>(kBufferBytes) * state.iterations(), t,
          pool.num_threads() == 1, 1e-9);
}
BENCHMARK(BM_MemoryReadSum)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Counts bytes read plus bytes written.
void BM_MemoryCopy(benchmark::State& state) {
  Buffer src(kBufferBytes / 2), dst(kBufferBytes / 2);
  cpu::ThreadPool pool(Threads());
  const size_t half = kBufferBytes / 2;
  const LoopSeconds t = TimedLoop(state, [&] {
    const int64_t tasks = pool.num_threads();
    pool.Run(tasks, [&](int64_t t, int) {
      const size_t chunk = half / tasks / 64 * 64;
      const size_t begin = chunk * t, end = t + 1 == tasks ? half : chunk * (t + 1);
      std::memcpy(reinterpret_cast<char*>(dst.data.get()) + begin,
                  reinterpret_cast<const char*>(src.data.get()) + begin, end - begin);
    });
    benchmark::ClobberMemory();
  });
  state.counters["GB/s"] = static_cast<double>(kBufferBytes) * state.iterations() / t.wall * 1e-9;
}
BENCHMARK(BM_MemoryCopy)->Unit(benchmark::kMillisecond)->UseRealTime();

constexpr int64_t kFmaIterations = 20'000'000;

// Args: vector width in floats (8: AVX2, 16: AVX-512), threads (0: all).
void BM_FmaPeak(benchmark::State& state) {
  const int width = static_cast<int>(state.range(0));
  if (width == 16 && !HasAvx512()) {
    state.SkipWithError("no AVX-512");
    return;
  }
  cpu::ThreadPool pool(state.range(1) > 0 ? static_cast<int>(state.range(1)) : Threads());
  const LoopSeconds t = TimedLoop(state, [&] {
    pool.Run(pool.num_threads(), [&](int64_t, int) {
      benchmark::DoNotOptimize(width == 16 ? Fma512Loop(kFmaIterations) : FmaLoop(kFmaIterations));
    });
  });
  SetRate(state, "GFLOP/s",
          12.0 * width * 2 * kFmaIterations * pool.num_threads() * state.iterations(), t,
          pool.num_threads() == 1, 1e-9);
}
BENCHMARK(BM_FmaPeak)
    ->Args({8, 0})
    ->Args({16, 0})
    ->Args({8, 1})
    ->Args({16, 1})
    ->ArgNames({"width", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

template <typename Fn>
double BestSeconds(int reps, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

double ReadBandwidth() {
  static const double bw = [] {
    Buffer buf(kBufferBytes);
    cpu::ThreadPool pool(Threads());
    const double s = BestSeconds(
        5, [&] { benchmark::DoNotOptimize(ParallelSum(pool, buf.data.get(), kBufferBytes / 4)); });
    return static_cast<double>(kBufferBytes) / s;
  }();
  return bw;
}

double FmaPeak() {
  static const double peak = [] {
    cpu::ThreadPool pool(Threads());
    const int width = HasAvx512() ? 16 : 8;
    const double s = BestSeconds(5, [&] {
      pool.Run(pool.num_threads(), [&](int64_t, int) {
        benchmark::DoNotOptimize(width == 16 ? Fma512Loop(kFmaIterations / 4)
                                             : FmaLoop(kFmaIterations / 4));
      });
    });
    return 12.0 * width * 2 * (kFmaIterations / 4) * pool.num_threads() / s;
  }();
  return peak;
}

}  // namespace tokenmill::bench
