// The CPU entries of the conformance suite: the default kernels (AVX-512/AVX2 where the
// CPU has them), AVX2 at most, and the portable ones, each on two threads.
#include "backend/backend_conformance.h"
#include "tokenmill/backend/cpu_backend.h"

namespace tokenmill::testing {

const std::vector<BackendCase>& ConformanceBackends() {
  static const std::vector<BackendCase> cases = {
      {"cpu",
       [] { return MakeCpuBackend({.num_threads = 2, .isa = CpuIsa::kAuto}); },
       [] { return std::string(); }},
      {"cpu_avx2",
       [] { return MakeCpuBackend({.num_threads = 2, .isa = CpuIsa::kAvx2}); },
       [] {
         return CpuKernelSetName(CpuIsa::kAvx2) == "avx2" ? std::string()
                                                           : std::string("no AVX2 on this CPU");
       }},
      {"cpu_generic",
       [] { return MakeCpuBackend({.num_threads = 2, .isa = CpuIsa::kGeneric}); },
       [] { return std::string(); }},
  };
  return cases;
}

}  // namespace tokenmill::testing
