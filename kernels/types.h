// Types shared by the kernel launchers' host API. Plain C++ (no device code): the CUDA
// backend includes these headers from .cc files compiled by the host compiler.
//
// Every launcher takes raw device pointers and a stream, enqueues work and returns the
// launch's cudaError_t (cudaSuccess when nothing needed launching). It never
// synchronizes and never allocates. Pointers are device pointers unless stated.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tokenmill::kernels {

// Element types the kernels read and write (a mirror of tokenmill::DType's float types;
// kernels include nothing from src/ or absl).
enum class ScalarType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline int ScalarBytes(ScalarType t) { return t == ScalarType::kF32 ? 4 : 2; }

}  // namespace tokenmill::kernels
