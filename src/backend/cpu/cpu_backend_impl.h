// The CPU Backend implementation (see include/tokenmill/backend/cpu_backend.h for the
// contract). cpu_backend.cc holds memory and planning, cpu_backend_ops.cc the ops.
//
// Error handling: an op whose arguments are wrong records InvalidArgument (sticky, the
// first one wins) and does nothing; once an error is recorded every later op of the step
// is skipped, and Finish() returns and clears it.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backend/cpu/ops.h"
#include "tokenmill/backend/cpu_backend.h"
#include "tokenmill/backend/step_metadata.h"

namespace tokenmill::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options);
  ~CpuBackend() override;

  std::string_view Name() const override { return "cpu"; }

  absl::StatusOr<TensorView> Allocate(DType dtype, Shape shape) override;
  void Free(const TensorView& t) override;
  absl::StatusOr<TensorView> UploadWeight(const TensorView& host) override;
  absl::Status AllocateKvCache(const KvCacheSpec& spec) override;
  const KvCacheSpec& kv_cache_spec() const override { return kv_spec_; }
  void CopyToHost(const TensorView& src, void* dst) override;
  void CopyFromHost(const void* src, TensorView dst) override;
  void CopyKvBlocks(std::span<const std::pair<int32_t, int32_t>> copies) override;

  absl::Status PlanStep(const BatchPlan& plan) override;
  absl::Status Finish() override;

  void Embedding(const TensorView& table, TensorView out) override;
  void RmsNorm(const TensorView& x, const TensorView& weight, float eps, TensorView out) override;
  void AddRmsNorm(TensorView residual, const TensorView& delta, const TensorView& weight, float eps,
                  TensorView out) override;
  void MatMul(const TensorView& x, const TensorView& w, const TensorView* bias,
              TensorView out) override;
  void Rope(TensorView q, TensorView k, int num_heads, int num_kv_heads,
            const RopeParams& params) override;
  void WriteKv(int layer, const TensorView& k, const TensorView& v) override;
  void Attention(int layer, const TensorView& q, const AttentionParams& params,
                 TensorView out) override;
  void SiluMul(const TensorView& gate, const TensorView& up, TensorView out) override;
  void GatherLogitsRows(const TensorView& x, TensorView out) override;

  // Host groups work on the tensors in place (no staging); device groups are refused.
  absl::Status AllReduceSum(CollectiveGroup& group, TensorView t) override;
  absl::Status AllGather(CollectiveGroup& group, const TensorView& send, TensorView recv) override;

 private:
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  using Allocation = std::unique_ptr<void, FreeDeleter>;
  struct KvLayer {
    Allocation k;
    Allocation v;
  };

  void Fail(absl::Status status);
  // Records InvalidArgument("<op>: <what>") unless ok; returns ok.
  bool Check(bool ok, std::string_view op, const std::string& what);
  // t is F32 with data and (when >= 0) the given rows and cols.
  bool CheckF32(std::string_view op, std::string_view name, const TensorView& t, int64_t rows,
                int64_t cols);
  bool CheckPlan(std::string_view op);
  bool CheckNormWeight(std::string_view op, const TensorView& weight, int64_t dim);
  KvLayerView LayerView(int layer) const {
    return {kv_layers_[layer].k.get(), kv_layers_[layer].v.get()};
  }
  // cos/sin of the current plan's positions for `params`, cached for the step.
  const std::vector<float>& RopeCosSin(const RopeParams& params);

  std::unique_ptr<ThreadPool> pool_;
  CpuContext ctx_;
  std::unordered_map<void*, Allocation> allocations_;
  KvCacheSpec kv_spec_;
  std::vector<KvLayer> kv_layers_;
  BatchPlan plan_;
  StepMetadata meta_;
  bool has_plan_ = false;
  absl::Status status_;
  bool rope_cache_valid_ = false;
  RopeParams rope_params_;
  std::vector<float> rope_cos_sin_;
};

}  // namespace tokenmill::cpu
