// Shared pieces of the CUDA benchmarks: device buffers filled with random (never zero)
// data, CUDA-event timing with manual time, the device's ceilings (copy bandwidth and a
// large bf16 GEMM, measured once per process) and skipping without a GPU.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tokenmill::bench {

// False (and the benchmark skipped with the reason) without a usable GPU.
bool RequireGpu(benchmark::State& state);

// cudaMalloc'ed memory freed on destruction; random bf16-representable values in
// [-1, 1] \ (-1/64, 1/64) unless filled otherwise.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_) { o.data_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }
  // Fills with random bf16 or fp32 values (by element size 2 or 4).
  void FillRandom(int element_bytes, uint32_t seed);
  void Upload(const void* host, size_t bytes);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Times `launch(i)` with CUDA events on `stream`: 3 warm-up calls, then per benchmark
// iteration `inner` calls (i counts up, for rotating buffers); sets the manual time of
// one call. Requires the benchmark to use ->UseManualTime().
template <typename Fn>
void TimeKernel(benchmark::State& state, cudaStream_t stream, Fn&& launch, int inner = 10) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  int64_t i = 0;
  for (int w = 0; w < 3; ++w) launch(i++);
  cudaStreamSynchronize(stream);
  for (auto _ : state) {
    cudaEventRecord(start, stream);
    for (int k = 0; k < inner; ++k) launch(i++);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3 / inner);
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) state.SkipWithError(cudaGetErrorString(err));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// Copies of a working set so that rotating through them defeats the L2 cache: enough
// to span 4x the L2 size, at least 1, at most `max_copies`.
int RotationCopies(size_t footprint_bytes, int max_copies = 64);

// Device-to-device copy bandwidth (bytes read + written per second) over 2 GiB, and the
// bf16 GEMM rate (FLOP/s) of cuBLASLt at 8192^3: the ceilings other figures are
// fractions of. Measured on first use.
double CopyBandwidth();
double GemmBf16Rate();

// Sets state.counters["GB/s"] (and "of_copy", the fraction of CopyBandwidth()) for
// `bytes` moved per call.
void ReportBandwidth(benchmark::State& state, double bytes);
// Sets "TFLOP/s" and "of_gemm" for `flops` per call.
void ReportFlops(benchmark::State& state, double flops);

}  // namespace tokenmill::bench
