// The CPU entries of the conformance suite: the default kernels (AVX-512/AVX2 where the
// CPU has them), AVX2 at most, and the portable ones, each on two threads.
#include "backend/backend_conformance.h"
#include "tokenmill/backend/cpu_backend.h"

namespace tokenmill::testing {
namespace {

BackendCase CpuCase(const std::string& name, CpuIsa isa, std::string_view expected_kernels) {
  BackendCase c;
  c.name = name;
  c.make = [isa] { return MakeCpuBackend({.num_threads = 2, .isa = isa}); };
  c.skip_reason = [isa, expected_kernels]() -> std::string {
    if (expected_kernels.empty() || CpuKernelSetName(isa) == expected_kernels) return "";
    return std::string("this CPU has no ") + std::string(expected_kernels) + " kernels";
  };
  return c;
}

}  // namespace

const std::vector<BackendCase>& ConformanceBackends() {
  static const std::vector<BackendCase> cases = {
      CpuCase("cpu", CpuIsa::kAuto, ""),
      CpuCase("cpu_avx2", CpuIsa::kAvx2, "avx2"),
      CpuCase("cpu_generic", CpuIsa::kGeneric, "generic"),
  };
  return cases;
}

}  // namespace tokenmill::testing
