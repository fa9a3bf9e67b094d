// CPU-specific behaviour: results independent of the thread count, argument errors are
// sticky and named, memory and KV-cache management.
#include "tokenmill/backend/cpu_backend.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "backend/backend_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill::testing {
namespace {

using ::testing::HasSubstr;

TensorView HostView(std::vector<float>& v, Shape shape) {
  return TensorView{v.data(), DType::kF32, shape};
}

// Runs one MatMul and one paged attention step on `backend`; returns both outputs.
std::vector<float> RunOps(Backend& backend, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> result;
  for (const auto& [t, k, n] :
       {std::tuple<int, int, int>{1, 512, 300}, {5, 256, 129}, {8, 1024, 64}, {77, 320, 200}}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kQ8_0}) {
      const HostWeight w = RandomWeight(rng, dtype, n, k);
      std::vector<float> x = RandomFloats(rng, t * k);
      std::vector<float> out(t * n, std::numeric_limits<float>::quiet_NaN());
      backend.MatMul(HostView(x, Shape{t, k}), *backend.UploadWeight(w.view()), nullptr,
                     HostView(out, Shape{t, n}));
      result.insert(result.end(), out.begin(), out.end());
    }
  }
  const int kv_heads = 2, group = 4, hd = 64, width = kv_heads * hd;
  const PagedScenario sc = MakePagedScenario(rng, {1, 0, 16, kv_heads, hd, DType::kF32},
                                             {{0, 90}, {0, 1}, {0, 33}, {700, 1}, {40, 20}});
  EXPECT_TRUE(backend.AllocateKvCache(sc.spec).ok());
  for (const BatchPlan* plan : {&sc.history, &sc.step}) {
    EXPECT_TRUE(backend.PlanStep(*plan).ok());
    const int t = plan->num_tokens();
    std::vector<float> k = RandomFloats(rng, t * width), v = RandomFloats(rng, t * width);
    backend.WriteKv(0, HostView(k, Shape{t, width}), HostView(v, Shape{t, width}));
  }
  const int t = sc.step.num_tokens();
  std::vector<float> q = RandomFloats(rng, t * width * group);
  std::vector<float> out(q.size());
  backend.Attention(0, HostView(q, Shape{t, width * group}),
                    {kv_heads * group, kv_heads, hd, 0.125f, 0},
                    HostView(out, Shape{t, width * group}));
  EXPECT_TRUE(backend.Finish().ok());
  result.insert(result.end(), out.begin(), out.end());
  return result;
}

TEST(CpuBackendTest, ResultsDoNotDependOnThreadCount) {
  for (CpuIsa isa : {CpuIsa::kAuto, CpuIsa::kAvx2, CpuIsa::kGeneric}) {
    const std::vector<float> one = RunOps(*MakeCpuBackend({1, isa}), 42);
    for (int threads : {2, 3}) {
      const std::vector<float> many = RunOps(*MakeCpuBackend({threads, isa}), 42);
      ASSERT_EQ(one.size(), many.size());
      EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0)
          << CpuKernelSetName(isa) << " with " << threads << " threads";
    }
  }
}

TEST(CpuBackendTest, KernelSetNames) {
  EXPECT_EQ(CpuKernelSetName(CpuIsa::kGeneric), "generic");
  const std::string_view best = CpuKernelSetName(CpuIsa::kAuto);
  const std::string_view avx2 = CpuKernelSetName(CpuIsa::kAvx2);
  EXPECT_TRUE(best == "avx512" || best == "avx2" || best == "generic") << best;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_EQ(avx2, "avx2");
    EXPECT_EQ(best, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                        ? "avx512"
                        : "avx2");
  }
#endif
}

TEST(CpuBackendTest, BadArgumentsAreStickyUntilFinish) {
  std::unique_ptr<Backend> b = MakeCpuBackend({2});
  std::vector<float> x(4 * 64, 1.0f), w(10 * 32, 1.0f), out(4 * 10, 0.0f);
  // K mismatch: x has 64 columns, w 32.
  b->MatMul(HostView(x, Shape{4, 64}), HostView(w, Shape{10, 32}), nullptr,
            HostView(out, Shape{4, 10}));
  // A later valid op is skipped: its output stays untouched.
  std::vector<float> gate(8, 1.0f), silu(8, -7.0f);
  b->SiluMul(HostView(gate, Shape{8}), HostView(gate, Shape{8}), HostView(silu, Shape{8}));
  const absl::Status s = b->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("MatMul"));
  EXPECT_THAT(s.message(), HasSubstr("x"));
  EXPECT_EQ(silu[0], -7.0f);
  EXPECT_TRUE(b->Finish().ok());  // cleared
  b->SiluMul(HostView(gate, Shape{8}), HostView(gate, Shape{8}), HostView(silu, Shape{8}));
  EXPECT_TRUE(b->Finish().ok());
  EXPECT_NEAR(silu[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

TEST(CpuBackendTest, OpsNeedingAPlanFailWithoutOne) {
  std::unique_ptr<Backend> b = MakeCpuBackend({1});
  std::vector<float> table(16, 1.0f), out(4, 0.0f);
  b->Embedding(HostView(table, Shape{4, 4}), HostView(out, Shape{1, 4}));
  EXPECT_EQ(b->Finish().code(), absl::StatusCode::kFailedPrecondition);
  BatchPlan plan;
  plan.token_ids = {1};
  plan.positions = {0};
  plan.sequences = {{0, 1, 1, {0}}};
  EXPECT_EQ(b->PlanStep(plan).code(), absl::StatusCode::kFailedPrecondition);  // no KV cache
}

TEST(CpuBackendTest, EmbeddingRejectsIdsOutsideTheTable) {
  std::unique_ptr<Backend> b = MakeCpuBackend({1});
  ASSERT_TRUE(b->AllocateKvCache({1, 4, 16, 1, 8, DType::kF32}).ok());
  BatchPlan plan;
  plan.token_ids = {3, 4};
  plan.positions = {0, 1};
  plan.sequences = {{0, 2, 2, {2}}};
  ASSERT_TRUE(b->PlanStep(plan).ok());
  std::vector<float> table(16, 1.0f), out(8, 0.0f);
  b->Embedding(HostView(table, Shape{4, 4}), HostView(out, Shape{2, 4}));
  const absl::Status s = b->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token_ids[1] = 4"));
}

TEST(CpuBackendTest, AttentionChecksHeadsAgainstTheCache) {
  std::unique_ptr<Backend> b = MakeCpuBackend({1});
  ASSERT_TRUE(b->AllocateKvCache({2, 4, 16, 2, 8, DType::kF32}).ok());
  BatchPlan plan;
  plan.token_ids = {3};
  plan.positions = {0};
  plan.sequences = {{0, 1, 1, {2}}};
  ASSERT_TRUE(b->PlanStep(plan).ok());
  std::vector<float> q(6 * 8, 1.0f), out(6 * 8);
  b->Attention(0, HostView(q, Shape{1, 48}), {6, 3, 8, 0.3f, 0}, HostView(out, Shape{1, 48}));
  EXPECT_THAT(b->Finish().message(), HasSubstr("KV cache"));
  b->Attention(2, HostView(q, Shape{1, 48}), {6, 2, 8, 0.3f, 0}, HostView(out, Shape{1, 48}));
  EXPECT_THAT(b->Finish().message(), HasSubstr("layer 2"));
}

TEST(CpuBackendTest, MemoryAndKvCacheManagement) {
  std::unique_ptr<Backend> b = MakeCpuBackend({1});
  EXPECT_EQ(b->Name(), "cpu");
  absl::StatusOr<TensorView> t = b->Allocate(DType::kF32, Shape{3, 5});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 64, 0u);
  const std::vector<float> src(15, 2.5f);
  b->CopyFromHost(src.data(), *t);
  std::vector<float> dst(15);
  b->CopyToHost(*t, dst.data());
  EXPECT_EQ(dst, src);
  b->Free(*t);
  EXPECT_FALSE(b->Allocate(DType::kQ8_0, Shape{3, 5}).ok());

  EXPECT_FALSE(b->AllocateKvCache({1, 4, 16, 1, 8, DType::kQ8_0}).ok());
  EXPECT_FALSE(b->AllocateKvCache({1, 0, 16, 1, 8, DType::kF32}).ok());
  EXPECT_FALSE(b->AllocateKvCache({1, 4, 16, 1, 4096, DType::kF32}).ok());
  ASSERT_TRUE(b->AllocateKvCache({3, 4, 16, 1, 8, DType::kF16}).ok());
  EXPECT_EQ(b->kv_cache_spec().num_layers, 3);
  EXPECT_EQ(b->kv_cache_spec().dtype, DType::kF16);

  std::vector<uint8_t> q8(34 * 3);
  EXPECT_FALSE(b->UploadWeight({q8.data(), DType::kQ8_0, Shape{2, 48}}).ok());
  EXPECT_TRUE(b->UploadWeight({q8.data(), DType::kQ8_0, Shape{3, 32}}).ok());
  EXPECT_FALSE(b->UploadWeight({q8.data(), DType::kI32, Shape{3, 4}}).ok());
}

}  // namespace
}  // namespace tokenmill::testing
