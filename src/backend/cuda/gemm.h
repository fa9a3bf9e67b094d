// GEMMs of the CUDA backend through cuBLASLt, with a plan cache per shape.
//
// out[m, n] = x[m, k] * w[n, k]^T (+ bias[n]), all row-major: in cuBLAS's column-major
// terms, D[n, m] = op_T(W[k, n]) * X[k, m]. Accumulation is fp32; bf16/fp16 operands run
// on tensor cores, fp32 operands as SGEMM or (allow_tf32) on TF32 tensor cores.
//
// A plan (descriptors plus the heuristic's algorithm) is built once per (shape, types,
// pointer alignments, bias) and reused: decode steps hit the cache every time. Shapes the
// heuristic rejects fall back to cublasGemmEx. Both paths are legal inside CUDA-graph
// capture: the workspace is preallocated and nothing allocates at run time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <cublasLt.h>
#include <cublas_v2.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "backend/cuda/device_memory.h"

namespace tokenmill::cuda {

struct GemmArgs {
  const void* w = nullptr;  // [n, k]
  cudaDataType_t w_type = CUDA_R_16BF;
  const void* x = nullptr;  // [m, k]; same type as w (the caller converts)
  void* out = nullptr;      // [m, n]
  cudaDataType_t out_type = CUDA_R_32F;  // CUDA_R_32F or w_type
  const float* bias = nullptr;           // [n] or null
  int64_t m = 0, n = 0, k = 0;
  bool allow_tf32 = false;
};

class CublasLtGemm {
 public:
  // Creates the handles and a workspace of `workspace_bytes` on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(DeviceAllocator* allocator,
                                                              size_t workspace_bytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Enqueues the product (and the bias, fused when out is fp32) on `stream`.
  absl::Status Run(const GemmArgs& args, cudaStream_t stream);
  size_t num_plans() const { return plans_.size(); }

 private:
  struct Plan;
  CublasLtGemm() = default;
  absl::StatusOr<Plan*> GetPlan(const GemmArgs& args);
  absl::Status RunFallback(const GemmArgs& args, cudaStream_t stream);

  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceAllocator* allocator_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  absl::flat_hash_map<std::string, std::unique_ptr<Plan>> plans_;
};

}  // namespace tokenmill::cuda
