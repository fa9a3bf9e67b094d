#include "cuda_bench_util.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <string>

#include "backend/cuda/device_memory.h"
#include "backend/cuda/gemm.h"
#include "tokenmill/backend/cuda_backend.h"
#include "tokenmill/core/dtype.h"

namespace tokenmill::bench {

bool RequireGpu(benchmark::State& state) {
  if (CudaDeviceCount() > 0) return true;
  state.SkipWithError(("needs a CUDA GPU: " + CudaDeviceDescription(0)).c_str());
  return false;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (cudaMalloc(&data_, std::max<size_t>(bytes, 256)) != cudaSuccess) {
    data_ = nullptr;
    bytes_ = 0;
  }
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = o.data_;
    bytes_ = o.bytes_;
    o.data_ = nullptr;
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

void DeviceBuffer::Upload(const void* host, size_t bytes) {
  cudaMemcpy(data_, host, std::min(bytes, bytes_), cudaMemcpyHostToDevice);
}

void DeviceBuffer::FillRandom(int element_bytes, uint32_t seed) {
  // One random 16 MiB pattern, repeated: random enough for bandwidth and GEMM timing
  // (never zeros, which run faster than real data on some chips).
  const size_t chunk = std::min<size_t>(bytes_, size_t{16} << 20);
  std::vector<uint8_t> host(chunk);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(1.0f / 64, 1.0f);
  for (size_t i = 0; i + element_bytes <= chunk; i += element_bytes) {
    const float v = (rng() & 1 ? 1.0f : -1.0f) * mag(rng);
    if (element_bytes == 2) {
      const uint16_t b = F32ToBf16(v);
      std::memcpy(host.data() + i, &b, 2);
    } else {
      std::memcpy(host.data() + i, &v, 4);
    }
  }
  cudaMemcpy(data_, host.data(), chunk, cudaMemcpyHostToDevice);
  for (size_t off = chunk; off < bytes_; off += chunk) {
    cudaMemcpy(static_cast<uint8_t*>(data_) + off, data_, std::min(chunk, bytes_ - off),
               cudaMemcpyDeviceToDevice);
  }
  cudaDeviceSynchronize();
}

int RotationCopies(size_t footprint_bytes, int max_copies) {
  int l2 = 0;
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0);
  const size_t want = 4 * static_cast<size_t>(std::max(l2, 1 << 20));
  const size_t copies = (want + footprint_bytes - 1) / std::max<size_t>(footprint_bytes, 1);
  return static_cast<int>(std::clamp<size_t>(copies, 1, max_copies));
}

namespace {

template <typename Fn>
double MedianSeconds(Fn&& fn, int reps) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  fn();  // warm-up
  std::vector<float> ms(reps);
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    cudaEventElapsedTime(&ms[r], a, b);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2] / 1e3;
}

}  // namespace

double CopyBandwidth() {
  static const double bw = [] {
    const size_t bytes = size_t{1} << 30;
    DeviceBuffer src(bytes), dst(bytes);
    src.FillRandom(4, 1);
    const double s = MedianSeconds(
        [&] { cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice); }, 10);
    return 2.0 * bytes / s;
  }();
  return bw;
}

double GemmBf16Rate() {
  static const double rate = [] {
    const int64_t n = 8192;
    cuda::DeviceAllocator alloc;
    auto gemm = cuda::CublasLtGemm::Create(&alloc, size_t{32} << 20);
    if (!gemm.ok()) return 0.0;
    DeviceBuffer a(n * n * 2), b(n * n * 2), c(n * n * 2);
    a.FillRandom(2, 2);
    b.FillRandom(2, 3);
    cuda::GemmArgs args;
    args.w = a.data();
    args.x = b.data();
    args.out = c.data();
    args.w_type = CUDA_R_16BF;
    args.out_type = CUDA_R_16BF;
    args.m = args.n = args.k = n;
    const double s = MedianSeconds([&] { (void)(*gemm)->Run(args, nullptr); }, 10);
    return 2.0 * n * n * n / s;
  }();
  return rate;
}

void ReportBandwidth(benchmark::State& state, double bytes) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_copy"] =
      benchmark::Counter(bytes / CopyBandwidth(), benchmark::Counter::kIsIterationInvariantRate);
}

void ReportFlops(benchmark::State& state, double flops) {
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_gemm"] =
      benchmark::Counter(flops / GemmBf16Rate(), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace tokenmill::bench
