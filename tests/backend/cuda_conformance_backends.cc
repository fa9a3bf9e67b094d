// The CUDA entries of the conformance suite. Each skips with the reason when this
// machine has no usable GPU.
//   cuda       the production configuration: BF16 weights, F32 caches stored as BF16,
//              split-K decode and tensor-core prefill attention, CUDA graphs. Tolerance
//              1e-2 (bf16 operands; METHOD.md's 1e-3..1e-2 band).
//   cuda_fp32  every dtype kept or widened to F32 and the generic fp32 attention kernels:
//              the same 1e-5 as the CPU, so any indexing or masking slip shows.
#include "backend/backend_conformance.h"
#include "tokenmill/backend/cuda_backend.h"

namespace tokenmill::testing {
namespace {

std::string NoGpuReason() {
  return CudaDeviceCount() > 0 ? std::string()
                               : "no CUDA device (" + CudaDeviceDescription(0) + ")";
}

std::unique_ptr<Backend> MakeOrDie(const CudaBackendOptions& options) {
  absl::StatusOr<std::unique_ptr<Backend>> b = MakeCudaBackend(options);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(b).value() : nullptr;
}

}  // namespace

const std::vector<BackendCase>& ConformanceBackends() {
  static const std::vector<BackendCase> cases = {
      {"cuda", [] { return MakeOrDie({}); }, NoGpuReason, 1e-2},
      {"cuda_fp32",
       [] {
         CudaBackendOptions o;
         o.weight_dtype = DType::kF32;
         o.f32_kv_cache_dtype = DType::kF32;
         o.use_fast_attention = false;
         return MakeOrDie(o);
       },
       NoGpuReason, 1e-5},
  };
  return cases;
}

}  // namespace tokenmill::testing
