// The CPU entries of the conformance suite: the default kernels (AVX2 where the CPU has
// it) and the portable ones, each on two threads.
#include "backend/backend_conformance.h"
#include "tokenmill/backend/cpu_backend.h"

namespace tokenmill::testing {

const std::vector<BackendCase>& ConformanceBackends() {
  static const std::vector<BackendCase> cases = {
      {"cpu",
       [] { return MakeCpuBackend({.num_threads = 2, .isa = CpuIsa::kAuto}); },
       [] { return std::string(); }},
      {"cpu_generic",
       [] { return MakeCpuBackend({.num_threads = 2, .isa = CpuIsa::kGeneric}); },
       [] { return std::string(); }},
  };
  return cases;
}

}  // namespace tokenmill::testing
