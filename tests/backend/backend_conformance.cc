#include "backend/backend_conformance.h"

#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

namespace tokenmill::testing {

void BackendConformanceTest::SetUp() {
  const std::string reason = GetParam().skip_reason ? GetParam().skip_reason() : "";
  if (!reason.empty()) GTEST_SKIP() << GetParam().name << ": " << reason;
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr);
  // Reproducible, but different data for every test.
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  rng_.seed(static_cast<uint32_t>(
      std::hash<std::string>()(std::string(info->test_suite_name()) + "." + info->name())));
}

TensorView BackendConformanceTest::Upload(const std::vector<float>& host, Shape shape) {
  absl::StatusOr<TensorView> t = backend_->Allocate(DType::kF32, shape);
  EXPECT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(static_cast<int64_t>(host.size()), shape.NumElements());
  backend_->CopyFromHost(host.data(), *t);
  return *t;
}

TensorView BackendConformanceTest::Poisoned(Shape shape) {
  return Upload(std::vector<float>(shape.NumElements(), std::numeric_limits<float>::quiet_NaN()),
                shape);
}

std::vector<float> BackendConformanceTest::Download(const TensorView& t) {
  std::vector<float> host(t.NumElements());
  backend_->CopyToHost(t, host.data());
  return host;
}

TensorView BackendConformanceTest::UploadWeight(const HostWeight& w) {
  absl::StatusOr<TensorView> t = backend_->UploadWeight(w.view());
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

void BackendConformanceTest::AllocatePoisonedKvCache(const KvCacheSpec& spec) {
  ASSERT_TRUE(backend_->AllocateKvCache(spec).ok());
  // One sequence that owns every block writes NaN to every slot of every layer.
  BatchPlan plan;
  const int slots = spec.num_blocks * spec.block_size;
  plan.sequences.push_back({0, slots, slots, {}});
  plan.sequences[0].block_table.resize(spec.num_blocks);
  std::iota(plan.sequences[0].block_table.begin(), plan.sequences[0].block_table.end(), 0);
  plan.token_ids.assign(slots, 0);
  plan.positions.resize(slots);
  std::iota(plan.positions.begin(), plan.positions.end(), 0);
  ASSERT_TRUE(backend_->PlanStep(plan).ok());
  const int64_t width = static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
  const std::vector<float> nan(slots * width, std::numeric_limits<float>::quiet_NaN());
  const TensorView k = Upload(nan, Shape{slots, width});
  for (int l = 0; l < spec.num_layers; ++l) backend_->WriteKv(l, k, k);
  ASSERT_TRUE(backend_->Finish().ok());
  backend_->Free(k);
}

std::string BackendCaseName(const ::testing::TestParamInfo<BackendCase>& info) {
  return info.param.name;
}

}  // namespace tokenmill::testing
