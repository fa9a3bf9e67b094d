// CPU MatMul on real model shapes. Decode (T = 1..8) is a GEMV and is reported in GB/s of
// weights streamed and as a fraction of the measured read bandwidth; weights rotate over
// enough copies to exceed the last-level cache, so the figure is DRAM streaming. Prefill
// (T = 128, 512) is a GEMM and is reported in GFLOP/s and as a fraction of the FMA peak of
// the widest vectors the CPU has. isa: 0 auto, 1 avx2, 2 generic.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "ceilings.h"
#include "tokenmill/backend/cpu_backend.h"

namespace tokenmill::bench {
namespace {

constexpr size_t kRotateBytes = size_t{256} << 20;  // 8x the L3 of this class of CPU

const DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0};
const CpuIsa kIsas[] = {CpuIsa::kAuto, CpuIsa::kAvx2, CpuIsa::kGeneric};

// Random bytes are fine for timing, except that fp16/bf16 exponents must stay finite and
// Q8_0 scales small, so every element is a plain number.
std::vector<uint8_t> RandomWeight(DType dtype, int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> bytes(DTypeBytes(dtype, n * k));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  switch (dtype) {
    case DType::kF32:
      for (size_t i = 0; i < bytes.size() / 4; ++i)
        reinterpret_cast<float*>(bytes.data())[i] = dist(rng);
      break;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < bytes.size() / 2; ++i) {
        const float f = dist(rng);
        reinterpret_cast<uint16_t*>(bytes.data())[i] =
            dtype == DType::kF16 ? F32ToF16(f) : F32ToBf16(f);
      }
      break;
    default:  // Q8_0
      for (size_t b = 0; b < bytes.size() / kQ8_0BlockBytes; ++b) {
        const uint16_t d = F32ToF16(0.01f);
        std::memcpy(bytes.data() + b * kQ8_0BlockBytes, &d, 2);
        for (int i = 0; i < kQ8_0BlockElems; ++i)
          bytes[b * kQ8_0BlockBytes + 2 + i] = static_cast<uint8_t>(rng() % 255);
      }
  }
  return bytes;
}

struct Fixture {
  std::unique_ptr<Backend> backend;
  std::vector<std::vector<uint8_t>> copies;
  std::vector<TensorView> weights;
  TensorView x, out;  // backend activations: 64-byte aligned, as in the model

  Fixture(CpuIsa isa, DType dtype, int64_t t, int64_t n, int64_t k, bool rotate, int threads = 0)
      : backend(MakeCpuBackend({.num_threads = threads, .isa = isa})) {
    std::mt19937 rng(1);
    const size_t bytes = DTypeBytes(dtype, n * k);
    const size_t num_copies = rotate ? std::max<size_t>(1, (kRotateBytes + bytes - 1) / bytes) : 1;
    for (size_t c = 0; c < num_copies; ++c) {
      copies.push_back(c == 0 ? RandomWeight(dtype, n, k, rng) : copies[0]);
      weights.push_back({copies.back().data(), dtype, Shape{n, k}});
    }
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> host(t * k);
    for (float& v : host) v = dist(rng);
    x = *backend->Allocate(DType::kF32, Shape{t, k});
    out = *backend->Allocate(DType::kF32, Shape{t, n});
    backend->CopyFromHost(host.data(), x);
  }
  void Run(size_t i, int64_t) { backend->MatMul(x, weights[i % weights.size()], nullptr, out); }
};

std::string Label(CpuIsa isa, DType dtype) {
  return std::string(DTypeName(dtype)) + " " + std::string(CpuKernelSetName(isa));
}

// Args: isa index (auto, avx2, generic), dtype index, T, N, K[, threads (default all)].
void BM_Gemv(benchmark::State& state) {
  const CpuIsa isa = kIsas[state.range(0)];
  const DType dtype = kDTypes[state.range(1)];
  const int64_t t = state.range(2), n = state.range(3), k = state.range(4);
  const int threads = state.range(5) > 0 ? static_cast<int>(state.range(5)) : 0;
  Fixture f(isa, dtype, t, n, k, /*rotate=*/true, threads);
  ReadBandwidth();  // measured before timing starts
  size_t i = 0;
  const LoopSeconds secs = TimedLoop(state, [&] { f.Run(i++, t); });
  const double bytes = static_cast<double>(DTypeBytes(dtype, n * k)) * state.iterations();
  state.SetLabel(Label(isa, dtype));
  SetRate(state, "GB/s", bytes, secs, threads == 1, 1e-9);
  state.counters["of_bw"] = bytes / secs.wall / ReadBandwidth();
  if (!f.backend->Finish().ok()) state.SkipWithError("MatMul failed");
}

void GemvArgs(benchmark::internal::Benchmark* b) {
  for (int d = 0; d < 4; ++d) {
    b->Args({0, d, 1, 4096, 4096, 0});
    b->Args({0, d, 1, 11008, 4096, 0});
    b->Args({0, d, 1, 4096, 11008, 0});
    b->Args({1, d, 1, 4096, 4096, 0});
    b->Args({0, d, 1, 4096, 4096, 1});
  }
  for (int t : {2, 3, 4, 6, 8}) {
    b->Args({0, 1, t, 4096, 4096, 0});
    b->Args({0, 3, t, 4096, 4096, 0});
  }
  // One thread, rated by CPU time: batched GEMV is partly compute-bound, and CPU time
  // stays comparable on a machine shared with other work.
  for (int t : {4, 8}) {
    for (int d = 0; d < 4; ++d) b->Args({0, d, t, 4096, 4096, 1});
  }
}
BENCHMARK(BM_Gemv)
    ->Apply(GemvArgs)
    ->ArgNames({"isa", "dtype", "T", "N", "K", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Args as BM_Gemv.
void BM_Gemm(benchmark::State& state) {
  const CpuIsa isa = kIsas[state.range(0)];
  const DType dtype = kDTypes[state.range(1)];
  const int64_t t = state.range(2), n = state.range(3), k = state.range(4);
  const int threads = state.range(5) > 0 ? static_cast<int>(state.range(5)) : 0;
  Fixture f(isa, dtype, t, n, k, /*rotate=*/false, threads);
  FmaPeak();  // measured before timing starts
  const LoopSeconds secs = TimedLoop(state, [&] { f.Run(0, t); });
  const double flops = 2.0 * t * n * k * state.iterations();
  state.SetLabel(Label(isa, dtype));
  SetRate(state, "GFLOP/s", flops, secs, threads == 1, 1e-9);
  state.counters["of_peak"] = flops / secs.wall / FmaPeak();
  if (!f.backend->Finish().ok()) state.SkipWithError("MatMul failed");
}

void GemmArgs(benchmark::internal::Benchmark* b) {
  for (int d = 0; d < 4; ++d) {
    b->Args({0, d, 128, 2048, 2048, 0});
    b->Args({0, d, 512, 2048, 2048, 0});
  }
  b->Args({1, 0, 512, 2048, 2048, 0});
  b->Args({1, 2, 512, 2048, 2048, 0});
  b->Args({2, 0, 128, 2048, 2048, 0});
  b->Args({0, 2, 512, 4096, 4096, 0});
  b->Args({0, 0, 16, 2048, 2048, 0});
  b->Args({0, 0, 128, 2048, 2048, 1});
  b->Args({0, 2, 128, 2048, 2048, 1});
  b->Args({1, 0, 128, 2048, 2048, 1});
}
BENCHMARK(BM_Gemm)
    ->Apply(GemmArgs)
    ->ArgNames({"isa", "dtype", "T", "N", "K", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokenmill::bench
