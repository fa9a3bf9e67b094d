// The one way CUDA, cuBLAS and cuBLASLt return codes become absl::Status in the CUDA
// backend (STYLE.md section 3: kernels return cudaError_t; backend/cuda converts it here).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace tokenmill::cuda {

// OK for success; otherwise INTERNAL (or RESOURCE_EXHAUSTED for out-of-memory) with
// "<file>:<line>: <expr>: <error name>: <error string>".
absl::Status CudaStatus(cudaError_t err, const char* expr, const char* file, int line);
absl::Status CudaStatus(cublasStatus_t err, const char* expr, const char* file, int line);

}  // namespace tokenmill::cuda

// Evaluates a CUDA runtime / cuBLAS / cuBLASLt call (or a kernel launcher returning
// cudaError_t) and returns its error as a Status from the enclosing function.
#define TM_CUDA_RETURN_IF_ERROR(expr)                                                   \
  do {                                                                                  \
    ::absl::Status tm_cuda_status_ = ::tokenmill::cuda::CudaStatus((expr), #expr,       \
                                                                   __FILE__, __LINE__); \
    if (!tm_cuda_status_.ok()) return tm_cuda_status_;                                  \
  } while (0)

// The same conversion as a value, for code that records rather than returns errors.
#define TM_CUDA_STATUS(expr) ::tokenmill::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__)
