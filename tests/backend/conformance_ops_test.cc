// Conformance: RmsNorm, AddRmsNorm, Rope, SiluMul, GatherLogitsRows.
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "backend/backend_conformance.h"

namespace tokenmill::testing {
namespace {

std::vector<double> RmsNormRef(const std::vector<double>& x, const HostWeight& w, double eps,
                               int64_t rows, int64_t dim) {
  std::vector<double> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = x[r * dim + i] * inv * w.values[i];
  }
  return out;
}

class NormTest : public BackendConformanceTest {};

TEST_P(NormTest, RmsNorm) {
  for (DType wdtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const auto& [rows, dim] : {std::pair<int64_t, int64_t>{1, 64}, {7, 200}, {65, 4096}}) {
      SCOPED_TRACE(absl::StrCat(std::string(DTypeName(wdtype)), " ", rows, "x", dim));
      const std::vector<float> x = RandomFloats(rng(), rows * dim, 3.0f);
      const HostWeight w = RandomWeight(rng(), wdtype, 1, dim);
      const TensorView out = Poisoned(Shape{rows, dim});
      backend().RmsNorm(Upload(x, Shape{rows, dim}), UploadWeight(w), 1e-5f, out);
      ASSERT_TRUE(backend().Finish().ok());
      const std::vector<double> xd(x.begin(), x.end());
      EXPECT_LT(RelativeError(Download(out), RmsNormRef(xd, w, 1e-5, rows, dim)),
                tolerance("RmsNorm", wdtype));
    }
  }
}

TEST_P(NormTest, AddRmsNormUpdatesResidualAndNormalises) {
  for (const auto& [rows, dim] : {std::pair<int64_t, int64_t>{1, 96}, {33, 1024}}) {
    SCOPED_TRACE(absl::StrCat(rows, "x", dim));
    const std::vector<float> residual = RandomFloats(rng(), rows * dim, 2.0f);
    const std::vector<float> delta = RandomFloats(rng(), rows * dim, 0.5f);
    const HostWeight w = RandomWeight(rng(), DType::kF32, 1, dim);
    const TensorView res = Upload(residual, Shape{rows, dim});
    const TensorView out = Poisoned(Shape{rows, dim});
    backend().AddRmsNorm(res, Upload(delta, Shape{rows, dim}), UploadWeight(w), 1e-6f, out);
    ASSERT_TRUE(backend().Finish().ok());
    std::vector<double> sum(residual.size());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = static_cast<double>(residual[i]) + delta[i];
    EXPECT_LT(RelativeError(Download(res), sum), tolerance("AddRmsNorm"));
    EXPECT_LT(RelativeError(Download(out), RmsNormRef(sum, w, 1e-6, rows, dim)),
              tolerance("AddRmsNorm"));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, NormTest, ::testing::ValuesIn(ConformanceBackends()),
                         BackendCaseName);

// Rotates every head of x [rows, heads * head_dim] in double at the plan's positions.
std::vector<double> RopeRef(const std::vector<float>& x, const BatchPlan& plan, int heads,
                            const RopeParams& p) {
  const std::vector<float> inv_freq = RopeInverseFrequencies(p);
  const int rotary = p.rotary_dim > 0 ? p.rotary_dim : p.head_dim;
  const int half = rotary / 2;
  std::vector<double> out(x.begin(), x.end());
  for (int t = 0; t < plan.num_tokens(); ++t) {
    for (int h = 0; h < heads; ++h) {
      const int64_t base = (static_cast<int64_t>(t) * heads + h) * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const double angle = static_cast<double>(plan.positions[t]) * inv_freq[i];
        const int64_t a = base + (p.is_neox ? i : 2 * i);
        const int64_t b = base + (p.is_neox ? i + half : 2 * i + 1);
        out[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
        out[b] = x[b] * std::cos(angle) + x[a] * std::sin(angle);
      }
    }
  }
  return out;
}

class RopeTest : public BackendConformanceTest {};

TEST_P(RopeTest, BothLayoutsAndScalings) {
  const PagedScenario sc = MakePagedScenario(rng(), {1, 0, 16, 1, 8, DType::kF32},
                                             {{0, 9}, {3000, 1}, {37, 4}, {131000, 1}});
  ASSERT_TRUE(backend().AllocateKvCache(sc.spec).ok());
  ASSERT_TRUE(backend().PlanStep(sc.step).ok());
  const int heads = 4, kv_heads = 2;
  for (bool neox : {true, false}) {
    for (RopeScalingType scaling :
         {RopeScalingType::kNone, RopeScalingType::kLinear, RopeScalingType::kLlama3}) {
      for (const auto& [head_dim, rotary] : {std::pair<int, int>{64, 64}, {128, 128}, {32, 16}}) {
        RopeParams p;
        p.head_dim = head_dim;
        p.rotary_dim = rotary;
        p.theta = scaling == RopeScalingType::kLlama3 ? 500000.0f : 10000.0f;
        p.is_neox = neox;
        p.scaling = scaling;
        p.factor = scaling == RopeScalingType::kLinear ? 4.0f : 8.0f;
        SCOPED_TRACE(absl::StrCat(neox ? "neox" : "interleaved", " scaling ",
                                  static_cast<int>(scaling), " hd ", head_dim, " rotary ", rotary));
        const int64_t t = sc.step.num_tokens();
        const std::vector<float> q = RandomFloats(rng(), t * heads * head_dim);
        const std::vector<float> k = RandomFloats(rng(), t * kv_heads * head_dim);
        const TensorView qd = Upload(q, Shape{t, heads * head_dim});
        const TensorView kd = Upload(k, Shape{t, kv_heads * head_dim});
        backend().Rope(qd, kd, heads, kv_heads, p);
        ASSERT_TRUE(backend().Finish().ok());
        EXPECT_LT(RelativeError(Download(qd), RopeRef(q, sc.step, heads, p)), tolerance("Rope"));
        EXPECT_LT(RelativeError(Download(kd), RopeRef(k, sc.step, kv_heads, p)), tolerance("Rope"));
        backend().Free(qd);
        backend().Free(kd);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, RopeTest, ::testing::ValuesIn(ConformanceBackends()),
                         BackendCaseName);

class ActivationTest : public BackendConformanceTest {};

TEST_P(ActivationTest, SiluMul) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 13}, {3, 344}, {40, 2816}}) {
    SCOPED_TRACE(absl::StrCat(rows, "x", cols));
    const std::vector<float> gate = RandomFloats(rng(), rows * cols, 12.0f);
    const std::vector<float> up = RandomFloats(rng(), rows * cols, 2.0f);
    const TensorView out = Poisoned(Shape{rows, cols});
    backend().SiluMul(Upload(gate, Shape{rows, cols}), Upload(up, Shape{rows, cols}), out);
    ASSERT_TRUE(backend().Finish().ok());
    std::vector<double> ref(gate.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      const double g = gate[i];
      ref[i] = g / (1.0 + std::exp(-g)) * up[i];
    }
    EXPECT_LT(RelativeError(Download(out), ref), tolerance("SiluMul"));
  }
}

TEST_P(ActivationTest, GatherLogitsRows) {
  const PagedScenario sc =
      MakePagedScenario(rng(), {1, 0, 16, 1, 8, DType::kF32}, {{0, 6}, {10, 1}, {0, 3}});
  BatchPlan plan = sc.step;
  plan.logits_rows = {9, 0, 6, 5};  // any rows, any order, repeats allowed
  plan.logits_rows.push_back(6);
  ASSERT_TRUE(backend().AllocateKvCache(sc.spec).ok());
  ASSERT_TRUE(backend().PlanStep(plan).ok());
  const int64_t dim = 40;
  const std::vector<float> x = RandomFloats(rng(), plan.num_tokens() * dim);
  const TensorView out = Poisoned(Shape{static_cast<int64_t>(plan.logits_rows.size()), dim});
  backend().GatherLogitsRows(Upload(x, Shape{plan.num_tokens(), dim}), out);
  ASSERT_TRUE(backend().Finish().ok());
  std::vector<double> ref;
  for (int32_t r : plan.logits_rows)
    ref.insert(ref.end(), x.begin() + r * dim, x.begin() + (r + 1) * dim);
  EXPECT_EQ(RelativeError(Download(out), ref), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Backends, ActivationTest, ::testing::ValuesIn(ConformanceBackends()),
                         BackendCaseName);

}  // namespace
}  // namespace tokenmill::testing
