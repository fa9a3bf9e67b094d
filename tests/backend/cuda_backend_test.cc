// CUDA backend behaviour beyond the shared conformance suite. Without a GPU: device
// discovery, option validation and the KV-block arithmetic run; the rest skips. On a
// GPU: upload dtype rules, BF16 activations, CUDA-graph replay against eager execution,
// copy-on-write of KV blocks, memory planning.
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "backend/backend_test_util.h"
#include "backend/cuda_test_util.h"
#include "gtest/gtest.h"
#include "tokenmill/backend/cpu_backend.h"
#include "tokenmill/backend/cuda_backend.h"

namespace tokenmill::testing {
namespace {

constexpr size_t kGiB = size_t{1} << 30, kMiB = size_t{1} << 20;

TEST(CudaBackendTest, DeviceCountAnswersWithoutError) {
  EXPECT_GE(CudaDeviceCount(), 0);
  EXPECT_FALSE(CudaDeviceDescription(0).empty());
  EXPECT_NE(CudaDeviceDescription(-1).find("no CUDA device"), std::string::npos);
}

TEST(CudaBackendTest, FactoryIsUnavailableWithoutGpu) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "this machine has a GPU";
  EXPECT_EQ(MakeCudaBackend({}).status().code(), absl::StatusCode::kUnavailable);
}

TEST(CudaBackendTest, RejectsBadOptionsBeforeTouchingTheDevice) {
  CudaBackendOptions o;
  o.weight_dtype = DType::kQ8_0;
  EXPECT_EQ(MakeCudaBackend(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.f32_kv_cache_dtype = DType::kI32;
  EXPECT_EQ(MakeCudaBackend(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.max_graphs = 0;
  EXPECT_EQ(MakeCudaBackend(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.device = CudaDeviceCount();  // one past the last
  EXPECT_EQ(MakeCudaBackend(o).status().code(), absl::StatusCode::kUnavailable);
}

TEST(CudaMemoryPlanTest, KvBlocksFillTheUtilizationBudget) {
  // 80 GiB card, 20 GiB in use: 0.9 * 80 - 20 - 1 (reserve) = 51 GiB of 2 MiB blocks.
  EXPECT_EQ(ComputeNumKvBlocks(80 * kGiB, 60 * kGiB, 0.9, 2 * kMiB, kGiB), 51 * 512);
  // 70 GiB in use leaves 1 GiB.
  EXPECT_EQ(ComputeNumKvBlocks(80 * kGiB, 10 * kGiB, 0.9, 2 * kMiB, kGiB), 512);
  // Over budget, nonsense inputs: no blocks, never negative.
  EXPECT_EQ(ComputeNumKvBlocks(80 * kGiB, 5 * kGiB, 0.9, 2 * kMiB, kGiB), 0);
  EXPECT_EQ(ComputeNumKvBlocks(80 * kGiB, 60 * kGiB, 0.9, 0, kGiB), 0);
  EXPECT_EQ(ComputeNumKvBlocks(80 * kGiB, 60 * kGiB, 0.0, 2 * kMiB, 0), 0);
  EXPECT_EQ(ComputeNumKvBlocks(80 * kGiB, 90 * kGiB, 0.5, kGiB, 0), 40);  // free > total
  // Utilization above 1 means all of it.
  EXPECT_EQ(ComputeNumKvBlocks(8 * kGiB, 8 * kGiB, 1.5, kGiB, 0), 8);
}

TEST(CudaBackendTest, WeightsUploadInTheDocumentedDTypes) {
  TM_REQUIRE_GPU();
  std::mt19937 rng(7);
  auto b = MakeCudaBackend({});
  ASSERT_TRUE(b.ok()) << b.status();
  struct Case {
    DType host;
    int64_t rows;
    DType device;
  };
  for (const Case& c : {Case{DType::kF32, 8, DType::kBF16}, Case{DType::kF16, 8, DType::kF16},
                        Case{DType::kBF16, 8, DType::kBF16}, Case{DType::kQ8_0, 8, DType::kF16},
                        Case{DType::kF16, 1, DType::kF32}, Case{DType::kBF16, 1, DType::kF32}}) {
    SCOPED_TRACE(std::string(DTypeName(c.host)));
    const HostWeight w = RandomWeight(rng, c.host, c.rows, 64);
    absl::StatusOr<TensorView> d = (*b)->UploadWeight(w.view());
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->dtype, c.device);
    EXPECT_EQ(d->shape, w.view().shape);
    // Round trip: the device copy holds the exact values, rounded once to its dtype.
    std::vector<uint8_t> raw(d->NumBytes());
    (*b)->CopyToHost(*d, raw.data());
    ASSERT_TRUE((*b)->Finish().ok());
    std::vector<double> want(w.values.size());
    for (size_t i = 0; i < want.size(); ++i) {
      want[i] = RoundToDType(static_cast<float>(w.values[i]), c.device);
    }
    EXPECT_LT(RelativeError(DecodeFloats(raw, c.device), want), 1e-7);
  }
}

TEST(CudaBackendTest, F32KvCacheIsStoredAsConfigured) {
  TM_REQUIRE_GPU();
  KvCacheSpec spec{2, 8, 16, 2, 64, DType::kF32};
  auto def = MakeCudaBackend({});
  ASSERT_TRUE(def.ok()) << def.status();
  ASSERT_TRUE((*def)->AllocateKvCache(spec).ok());
  EXPECT_EQ((*def)->kv_cache_spec().dtype, DType::kBF16);
  EXPECT_EQ((*def)->kv_cache_spec().num_blocks, 8);
  spec.dtype = DType::kF16;
  ASSERT_TRUE((*def)->AllocateKvCache(spec).ok());
  EXPECT_EQ((*def)->kv_cache_spec().dtype, DType::kF16);
  CudaBackendOptions exact;
  exact.f32_kv_cache_dtype = DType::kF32;
  auto b = MakeCudaBackend(exact);
  ASSERT_TRUE(b.ok()) << b.status();
  spec.dtype = DType::kF32;
  ASSERT_TRUE((*b)->AllocateKvCache(spec).ok());
  EXPECT_EQ((*b)->kv_cache_spec().dtype, DType::kF32);
  spec.dtype = DType::kQ8_0;
  EXPECT_EQ((*b)->AllocateKvCache(spec).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaBackendTest, BadArgumentsAreStickyUntilFinish) {
  TM_REQUIRE_GPU();
  auto b = MakeCudaBackend({});
  ASSERT_TRUE(b.ok()) << b.status();
  Backend& be = **b;
  auto x = be.Allocate(DType::kF32, Shape{4, 64});
  auto out = be.Allocate(DType::kF32, Shape{4, 32});  // wrong width
  ASSERT_TRUE(x.ok() && out.ok());
  std::mt19937 rng(3);
  const HostWeight w = RandomWeight(rng, DType::kF32, 1, 64);
  auto wd = be.UploadWeight(w.view());
  ASSERT_TRUE(wd.ok());
  be.RmsNorm(*x, *wd, 1e-5f, *out);
  be.SiluMul(*x, *x, *x);  // skipped: an error is pending
  const absl::Status s = be.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("RmsNorm"), std::string::npos) << s;
  EXPECT_TRUE(be.Finish().ok());
  // A host pointer is not device memory.
  std::vector<float> host(256);
  TensorView fake{host.data(), DType::kF32, Shape{4, 64}};
  be.SiluMul(fake, fake, *x);
  EXPECT_EQ(be.Finish().code(), absl::StatusCode::kInvalidArgument);
  // Ops that need a plan fail without one.
  be.Embedding(*wd, *x);
  EXPECT_EQ(be.Finish().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CudaBackendTest, Bf16ActivationsMatchTheCpuReference) {
  TM_REQUIRE_GPU();
  std::mt19937 rng(11);
  auto b = MakeCudaBackend({});
  ASSERT_TRUE(b.ok()) << b.status();
  std::unique_ptr<Backend> cpu = MakeCpuBackend({.num_threads = 2});
  const int64_t rows = 37, k = 256, n = 96;
  const std::vector<float> x = RoundAll(RandomFloats(rng, rows * k), DType::kBF16);
  const HostWeight w = RandomWeight(rng, DType::kBF16, n, k);
  const HostWeight norm = RandomWeight(rng, DType::kF32, 1, k);
  // CPU, F32 activations.
  auto cx = UploadF32(*cpu, x, Shape{rows, k});
  auto cn = cpu->Allocate(DType::kF32, Shape{rows, k});
  auto co = cpu->Allocate(DType::kF32, Shape{rows, n});
  const TensorView cw = *cpu->UploadWeight(w.view()), cnorm = *cpu->UploadWeight(norm.view());
  cpu->RmsNorm(cx, cnorm, 1e-5f, *cn);
  cpu->MatMul(*cn, cw, nullptr, *co);
  cpu->SiluMul(*co, *co, *co);
  ASSERT_TRUE(cpu->Finish().ok());
  std::vector<float> want(rows * n);
  cpu->CopyToHost(*co, want.data());
  // CUDA, BF16 activations end to end.
  Backend& be = **b;
  auto gx = be.Allocate(DType::kBF16, Shape{rows, k});
  auto gn = be.Allocate(DType::kBF16, Shape{rows, k});
  auto go = be.Allocate(DType::kBF16, Shape{rows, n});
  ASSERT_TRUE(gx.ok() && gn.ok() && go.ok());
  const std::vector<uint16_t> xb = ToBf16(x);
  be.CopyFromHost(xb.data(), *gx);
  const TensorView gw = *be.UploadWeight(w.view()), gnorm = *be.UploadWeight(norm.view());
  be.RmsNorm(*gx, gnorm, 1e-5f, *gn);
  be.MatMul(*gn, gw, nullptr, *go);
  be.SiluMul(*go, *go, *go);
  ASSERT_TRUE(be.Finish().ok());
  std::vector<uint8_t> raw(go->NumBytes());
  be.CopyToHost(*go, raw.data());
  ASSERT_TRUE(be.Finish().ok());
  const std::vector<double> ref(want.begin(), want.end());
  EXPECT_LT(RelativeError(DecodeFloats(raw, DType::kBF16), ref), 2e-2);
}

TEST(CudaBackendTest, CopiedKvBlocksAttendLikeTheOriginals) {
  TM_REQUIRE_GPU();
  std::mt19937 rng(5);
  auto b = MakeCudaBackend({});
  ASSERT_TRUE(b.ok()) << b.status();
  Backend& be = **b;
  const int heads = 4, kv_heads = 2, hd = 64, bs = 16, ctx = 40;  // 3 blocks
  const int64_t width = int64_t{kv_heads} * hd;
  ASSERT_TRUE(be.AllocateKvCache({2, 8, bs, kv_heads, hd, DType::kBF16}).ok());
  // Sequence A fills blocks {5, 1, 6}; block 6 is then copied to block 2.
  BatchPlan fill = DecodeLikePlan({{ctx, ctx}}, {{5, 1, 6}});
  ASSERT_TRUE(be.PlanStep(fill).ok());
  const TensorView k = UploadF32(be, RandomFloats(rng, ctx * width), Shape{ctx, width});
  const TensorView v = UploadF32(be, RandomFloats(rng, ctx * width), Shape{ctx, width});
  be.WriteKv(1, k, v);
  const std::vector<std::pair<int32_t, int32_t>> copies = {{6, 2}};
  be.CopyKvBlocks(copies);
  ASSERT_TRUE(be.Finish().ok());
  // One query against table {5, 1, 6} and the same query against {5, 1, 2}.
  BatchPlan step = DecodeLikePlan({{1, ctx}, {1, ctx}}, {{5, 1, 6}, {5, 1, 2}});
  ASSERT_TRUE(be.PlanStep(step).ok());
  std::vector<float> q = RandomFloats(rng, heads * hd);
  q.insert(q.end(), q.begin(), q.end());
  const TensorView qd = UploadF32(be, q, Shape{2, heads * hd});
  const TensorView out = UploadF32(be, std::vector<float>(2 * heads * hd, NAN), Shape{2, heads * hd});
  AttentionParams p{heads, kv_heads, hd, 0.125f, 0};
  be.Attention(1, qd, p, out);
  ASSERT_TRUE(be.Finish().ok());
  std::vector<float> got(2 * heads * hd);
  be.CopyToHost(out, got.data());
  ASSERT_TRUE(be.Finish().ok());
  for (int i = 0; i < heads * hd; ++i) {
    ASSERT_TRUE(std::isfinite(got[i]));
    ASSERT_EQ(got[i], got[heads * hd + i]) << i;
  }
}

TEST(CudaBackendTest, MemoryReportAndKvPlanning) {
  TM_REQUIRE_GPU();
  auto b = MakeCudaBackend({});
  ASSERT_TRUE(b.ok()) << b.status();
  auto before = GetCudaMemoryInfo(**b);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_GT(before->total_bytes, 0u);
  EXPECT_GE(before->workspace_bytes, size_t{32} << 20);  // the GEMM workspace
  std::mt19937 rng(1);
  const HostWeight w = RandomWeight(rng, DType::kF32, 1024, 1024);
  ASSERT_TRUE((*b)->UploadWeight(w.view()).ok());
  auto after = GetCudaMemoryInfo(**b);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->weight_bytes - before->weight_bytes, size_t{1024} * 1024 * 2);  // BF16
  const KvCacheSpec geometry{32, 0, 16, 8, 128, DType::kBF16};
  // A small utilization keeps the test cheap; the blocks must then really fit.
  const double util =
      static_cast<double>(after->total_bytes - after->free_bytes + 512 * kMiB) / after->total_bytes;
  auto blocks = CudaNumKvBlocks(**b, geometry, util, 0);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_NEAR(*blocks, 256, 2);  // 512 MiB of 2 MiB blocks (32 layers x 2 x 16 x 8 x 128 x 2 B)
  KvCacheSpec spec = geometry;
  spec.num_blocks = *blocks;
  ASSERT_TRUE((*b)->AllocateKvCache(spec).ok());
  auto with_kv = GetCudaMemoryInfo(**b);
  ASSERT_TRUE(with_kv.ok());
  EXPECT_GE(with_kv->kv_cache_bytes, spec.BytesPerToken() * 16 * spec.num_blocks);
  std::unique_ptr<Backend> cpu = MakeCpuBackend({});
  EXPECT_EQ(GetCudaMemoryInfo(*cpu).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmill::testing
