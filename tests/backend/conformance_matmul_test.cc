// Conformance: MatMul (GEMV and GEMM shapes, every weight dtype, bias) and Embedding.
#include <string>

#include "absl/strings/str_cat.h"
#include "backend/backend_conformance.h"

namespace tokenmill::testing {
namespace {

struct MatMulShape {
  int64_t t, k, n;
};

std::vector<double> MatMulRef(const std::vector<float>& x, const HostWeight& w,
                              const std::vector<float>* bias, int64_t t) {
  std::vector<double> out(t * w.rows);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t j = 0; j < w.rows; ++j) {
      double s = bias != nullptr ? (*bias)[j] : 0.0;
      for (int64_t c = 0; c < w.cols; ++c)
        s += static_cast<double>(x[i * w.cols + c]) * w.values[j * w.cols + c];
      out[i * w.rows + j] = s;
    }
  }
  return out;
}

class MatMulTest : public BackendConformanceTest {
 protected:
  void RunCase(DType dtype, const MatMulShape& s, bool with_bias) {
    SCOPED_TRACE(absl::StrCat(std::string(DTypeName(dtype)), " T=", s.t, " K=", s.k, " N=", s.n,
                              with_bias ? " +bias" : ""));
    const HostWeight w = RandomWeight(rng(), dtype, s.n, s.k);
    const std::vector<float> x = RandomFloats(rng(), s.t * s.k);
    const std::vector<float> b = RandomFloats(rng(), s.n);
    const TensorView wd = UploadWeight(w);
    const TensorView xd = Upload(x, Shape{s.t, s.k});
    const TensorView bd = Upload(b, Shape{s.n});
    const TensorView out = Poisoned(Shape{s.t, s.n});
    backend().MatMul(xd, wd, with_bias ? &bd : nullptr, out);
    ASSERT_TRUE(backend().Finish().ok());
    const double err = RelativeError(Download(out), MatMulRef(x, w, with_bias ? &b : nullptr, s.t));
    EXPECT_LT(err, tolerance("MatMul", dtype));
    backend().Free(xd);
    backend().Free(bd);
    backend().Free(out);
  }
};

// Decode batches (GEMV), prefill batches (GEMM), and edges of every tiling: K not a
// multiple of the vector width or of the K block, N not a multiple of the column tile or
// of the GEMV's row group, T not a multiple of the row tile.
const MatMulShape kFloatShapes[] = {
    {1, 64, 48},
    {2, 96, 33},
    {3, 40, 17},
    {4, 128, 64},
    {5, 72, 9},
    {8, 264, 40},
    {1, 37, 5},
    {9, 37, 31},
    {13, 300, 70},
    {64, 64, 64},
    {150, 520, 130},
    {7, 1024, 3},
    {33, 4, 129},
    {1, 2048, 16},
    {200, 48, 1},
    {17, 257, 16},
    // Decode batches whose activations outgrow L1: the GEMV sweeps K in blocks.
    {4, 2048, 70},
    {5, 1600, 150},
    {8, 1030, 37},
    {3, 3000, 9},
    {2, 5000, 5},
};
// Q8_0 needs whole 32-element blocks along K.
const MatMulShape kQ8Shapes[] = {
    {1, 64, 48},     {3, 96, 17},   {4, 288, 64},  {8, 544, 40}, {9, 32, 31},   {70, 320, 70},
    {150, 512, 129}, {1, 2048, 16}, {6, 1536, 70}, {8, 2048, 9}, {3, 2240, 66},
};

TEST_P(MatMulTest, F32Weights) {
  for (const MatMulShape& s : kFloatShapes) RunCase(DType::kF32, s, false);
}

TEST_P(MatMulTest, F16Weights) {
  for (const MatMulShape& s : kFloatShapes) RunCase(DType::kF16, s, false);
}

TEST_P(MatMulTest, BF16Weights) {
  for (const MatMulShape& s : kFloatShapes) RunCase(DType::kBF16, s, false);
}

TEST_P(MatMulTest, Q8_0Weights) {
  for (const MatMulShape& s : kQ8Shapes) RunCase(DType::kQ8_0, s, false);
}

TEST_P(MatMulTest, BiasIsAddedOnEveryPath) {
  for (DType d : {DType::kF32, DType::kBF16, DType::kQ8_0}) {
    RunCase(d, {1, 64, 40}, true);
    RunCase(d, {6, 96, 33}, true);
    RunCase(d, {40, 128, 70}, true);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, MatMulTest, ::testing::ValuesIn(ConformanceBackends()),
                         BackendCaseName);

class EmbeddingTest : public BackendConformanceTest {};

TEST_P(EmbeddingTest, GathersRowsOfEveryDType) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    const int64_t vocab = 50, dim = 96;
    const HostWeight table = RandomWeight(rng(), dtype, vocab, dim);
    const PagedScenario sc =
        MakePagedScenario(rng(), {1, 0, 16, 1, 8, DType::kF32}, {{0, 5}, {7, 1}, {0, 12}});
    BatchPlan plan = sc.step;
    for (int32_t& id : plan.token_ids) id = static_cast<int32_t>(rng()() % vocab);
    plan.token_ids[1] = plan.token_ids[3];  // a repeated id
    ASSERT_TRUE(backend().AllocateKvCache(sc.spec).ok());
    ASSERT_TRUE(backend().PlanStep(plan).ok());
    const TensorView out = Poisoned(Shape{plan.num_tokens(), dim});
    backend().Embedding(UploadWeight(table), out);
    ASSERT_TRUE(backend().Finish().ok());
    std::vector<double> ref;
    for (int32_t id : plan.token_ids) {
      ref.insert(ref.end(), table.values.begin() + id * dim, table.values.begin() + (id + 1) * dim);
    }
    EXPECT_LT(RelativeError(Download(out), ref), tolerance("Embedding", dtype));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, EmbeddingTest, ::testing::ValuesIn(ConformanceBackends()),
                         BackendCaseName);

}  // namespace
}  // namespace tokenmill::testing
