// The backend conformance suite: every Backend op on fresh random inputs (never zeros),
// outputs poisoned with NaN beforehand, compared with a naive double-precision reference
// written in the tests.
//
// The suite is parameterised over BackendCase. Each test binary links the conformance_*.cc
// sources with one file that defines ConformanceBackends(): cpu_conformance_backends.cc for
// the CPU; a CUDA build adds its own list (see tests/backend/CMakeLists.txt). A case whose
// skip_reason() is non-empty (e.g. no GPU) skips every test.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend_test_util.h"
#include "gtest/gtest.h"
#include "tokenmill/backend/backend.h"

namespace tokenmill::testing {

struct BackendCase {
  using ToleranceFn = std::function<double(const std::string& op, DType dtype)>;
  BackendCase() = default;
  BackendCase(std::string name, std::function<std::unique_ptr<Backend>()> make,
              std::function<std::string()> skip_reason, double tolerance = 1e-5,
              ToleranceFn tolerance_for = nullptr)
      : name(std::move(name)),
        make(std::move(make)),
        skip_reason(std::move(skip_reason)),
        tolerance(tolerance),
        tolerance_for(std::move(tolerance_for)) {}

  std::string name;  // test-name suffix: letters, digits and '_' only
  std::function<std::unique_ptr<Backend>()> make;
  std::function<std::string()> skip_reason;  // "" when the backend can run here
  // Bound on ||out - ref|| / ||ref|| (the reference uses the exact stored values of
  // weights and caches, so fp32 math alone must meet it).
  double tolerance = 1e-5;
  // Optional per-op override, e.g. for a backend whose GEMMs round activations to bf16:
  // op is the Backend method name ("MatMul", "Attention", ...), dtype the weight or KV
  // dtype of the case (kF32 where none applies). Unset: `tolerance` everywhere.
  ToleranceFn tolerance_for;
};

// gtest prints the case by name.
inline void PrintTo(const BackendCase& c, std::ostream* os) { *os << c.name; }

// Defined once per test binary.
const std::vector<BackendCase>& ConformanceBackends();

class BackendConformanceTest : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override;

  Backend& backend() { return *backend_; }
  double tolerance(const std::string& op, DType dtype = DType::kF32) const {
    const BackendCase& c = GetParam();
    return c.tolerance_for ? c.tolerance_for(op, dtype) : c.tolerance;
  }
  std::mt19937& rng() { return rng_; }

  // Device tensor with the given host contents.
  TensorView Upload(const std::vector<float>& host, Shape shape);
  // Device F32 tensor filled with NaN, so unwritten elements are caught.
  TensorView Poisoned(Shape shape);
  std::vector<float> Download(const TensorView& t);
  // A weight of `dtype` on the device; `w` keeps the host bytes alive.
  TensorView UploadWeight(const HostWeight& w);
  // Allocates a KV cache and fills every slot of every layer with NaN.
  void AllocatePoisonedKvCache(const KvCacheSpec& spec);

 private:
  std::unique_ptr<Backend> backend_;
  std::mt19937 rng_;
};

std::string BackendCaseName(const ::testing::TestParamInfo<BackendCase>& info);

}  // namespace tokenmill::testing
