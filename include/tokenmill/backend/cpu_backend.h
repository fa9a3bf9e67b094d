// The CPU backend: the fp32 reference every other backend is compared with, and a fast
// path for machines without a GPU.
//
// Arithmetic is fp32 throughout. Weights stay in their stored dtype (F32, F16, BF16, Q8_0)
// and are converted inside the kernels; activations are F32; the KV cache is F32, F16 or
// BF16. Kernels are chosen at run time: AVX-512 for the matmuls and AVX2+FMA+F16C for the
// rest when the CPU has them, otherwise portable C++. Work is spread over a persistent thread pool
// owned by the backend.
//
// Determinism: for a given kernel set, results do not depend on the number of threads
// (every output element is reduced in a fixed order by exactly one task).
#pragma once

#include <memory>
#include <string_view>

#include "tokenmill/backend/backend.h"

namespace tokenmill {

enum class CpuIsa {
  kAuto,     // the best kernels this CPU supports
  kAvx2,     // at most AVX2+FMA+F16C (falls back to generic without them)
  kGeneric,  // portable C++ kernels only (tests, debugging, reference timings)
};

struct CpuBackendOptions {
  // Threads that run ops, the calling thread included. <= 0: one per hardware thread.
  int num_threads = 0;
  CpuIsa isa = CpuIsa::kAuto;
};

// Never fails; the returned backend has no KV cache until AllocateKvCache().
std::unique_ptr<Backend> MakeCpuBackend(const CpuBackendOptions& options = {});

// Name of the kernel set `isa` resolves to on this machine: "avx512", "avx2" or "generic".
std::string_view CpuKernelSetName(CpuIsa isa = CpuIsa::kAuto);

}  // namespace tokenmill
