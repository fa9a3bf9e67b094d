// GEMMs through the backend's cuBLASLt path on Llama-3-8B projection shapes: GEMV-shaped
// (decode, M = 1 and 8) in GB/s of weights streamed as a fraction of the copy bandwidth;
// large (prefill) in TFLOP/s as a fraction of the bf16 GEMM rate. BF16 operands, fp32
// accumulation and output (the backend's configuration for F32 activations).
#include "backend/cuda/device_memory.h"
#include "backend/cuda/gemm.h"
#include "cuda_bench_util.h"

namespace tokenmill::bench {
namespace {

void BM_Ceilings(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  for (auto _ : state) {
    state.SetIterationTime(1.0);
  }
  state.counters["copy_GB/s"] = CopyBandwidth() / 1e9;
  state.counters["gemm_bf16_TFLOP/s"] = GemmBf16Rate() / 1e12;
}
BENCHMARK(BM_Ceilings)->Iterations(1)->UseManualTime();

void RunGemm(benchmark::State& state, bool report_bytes) {
  if (!RequireGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  cuda::DeviceAllocator alloc;
  auto gemm = cuda::CublasLtGemm::Create(&alloc, size_t{32} << 20);
  if (!gemm.ok()) {
    state.SkipWithError(std::string(gemm.status().message()).c_str());
    return;
  }
  const size_t w_bytes = n * k * 2;
  const int copies = report_bytes ? RotationCopies(w_bytes) : 1;
  DeviceBuffer w(w_bytes * copies), x(m * k * 2), out(m * n * 4);
  w.FillRandom(2, 1);
  x.FillRandom(2, 2);
  cuda::GemmArgs args;
  args.w_type = CUDA_R_16BF;
  args.x = x.data();
  args.out = out.data();
  args.out_type = CUDA_R_32F;
  args.m = m;
  args.n = n;
  args.k = k;
  absl::Status status;
  TimeKernel(state, nullptr, [&](int64_t i) {
    args.w = w.as<uint8_t>() + (i % copies) * w_bytes;
    const absl::Status s = (*gemm)->Run(args, nullptr);
    if (!s.ok()) status = s;
  }, report_bytes ? 20 : 3);
  if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
  if (report_bytes) {
    ReportBandwidth(state, static_cast<double>(w_bytes) + m * k * 2 + m * n * 4);
  } else {
    ReportFlops(state, 2.0 * m * n * k);
  }
}

void BM_GemvShaped(benchmark::State& state) { RunGemm(state, true); }
BENCHMARK(BM_GemvShaped)
    ->ArgNames({"M", "N", "K"})
    ->ArgsProduct({{1, 8}, {4096}, {4096}})
    ->Args({1, 1024, 4096})
    ->Args({1, 14336, 4096})
    ->Args({1, 4096, 14336})
    ->Args({1, 128256, 4096})
    ->Args({8, 14336, 4096})
    ->Args({8, 4096, 14336})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_LargeGemm(benchmark::State& state) { RunGemm(state, false); }
BENCHMARK(BM_LargeGemm)
    ->ArgNames({"M", "N", "K"})
    ->Args({2048, 4096, 4096})
    ->Args({8192, 4096, 4096})
    ->Args({8192, 14336, 4096})
    ->Args({8192, 4096, 14336})
    ->Args({8192, 8192, 8192})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokenmill::bench

BENCHMARK_MAIN();
