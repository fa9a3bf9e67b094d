// The CUDA Backend implementation (contract: include/tokenmill/backend/cuda_backend.h).
// cuda_backend.cc holds memory, planning and step control; cuda_backend_ops.cc the ops;
// cuda_backend_api.cc the free functions of the public header.
//
// Every op validates its arguments on the host (recording InvalidArgument, like the CPU
// backend), then hands a launch function to Launch(): it runs at once, or, in a decode
// step recorded for a CUDA graph, when the step ends. Rope() is deferred until the next
// op so that, when that op is WriteKv() of the same k, one kernel rotates q and k and
// writes the cache.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/device_memory.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/step_buffers.h"
#include "backend/cuda/step_graphs.h"
#include "kernels/types.h"
#include "tokenmill/backend/cuda_backend.h"
#include "tokenmill/backend/step_metadata.h"

namespace tokenmill::cuda {

// Appends the raw bytes of values to a graph key.
class KeyBuilder {
 public:
  template <typename... Ts>
  KeyBuilder& Add(const Ts&... values) {
    (bytes_.append(reinterpret_cast<const char*>(&values), sizeof(values)), ...);
    return *this;
  }
  KeyBuilder& Add(std::string_view s) {
    bytes_.append(s);
    return *this;
  }
  const std::string& str() const { return bytes_; }

 private:
  std::string bytes_;
};

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view Name() const override { return "cuda"; }

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
  void RmsNorm(const TensorView& x, const TensorView& weight, float eps,
               TensorView out) override;
  void AddRmsNorm(TensorView residual, const TensorView& delta, const TensorView& weight,
                  float eps, TensorView out) override;
  void MatMul(const TensorView& x, const TensorView& w, const TensorView* bias,
              TensorView out) override;
  void Rope(TensorView q, TensorView k, int num_heads, int num_kv_heads,
            const RopeParams& params) override;
  void WriteKv(int layer, const TensorView& k, const TensorView& v) override;
  void Attention(int layer, const TensorView& q, const AttentionParams& params,
                 TensorView out) override;
  void SiluMul(const TensorView& gate, const TensorView& up, TensorView out) override;
  void GatherLogitsRows(const TensorView& x, TensorView out) override;

  // Collectives (collectives.cc): a device group enqueued on stream_ is an op like the
  // others (recorded into decode graphs); a host group is staged through host memory.
  void* device_stream() const override { return stream_; }
  absl::Status AllReduceSum(CollectiveGroup& group, TensorView t) override;
  absl::Status AllGather(CollectiveGroup& group, const TensorView& send,
                         TensorView recv) override;

  // For the public free functions.
  absl::StatusOr<CudaMemoryInfo> MemoryInfo();
  // The dtype a KV-cache spec of `requested` dtype is stored in.
  DType StoredKvDType(DType requested) const;
  absl::Status Sample(const TensorView& logits, const std::vector<DeviceSamplingRow>& rows,
                      std::vector<int32_t>* tokens);
  CudaGraphStats GraphStats() const;

 private:
  struct PendingRope {
    TensorView q, k;
    int num_heads = 0, num_kv_heads = 0, head_dim = 0, rotary_dim = 0;
    bool is_neox = true;
    const float* inv_freq = nullptr;
  };

  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}
  absl::Status Init();

  // --- errors ---
  void Fail(absl::Status status);
  bool Check(bool ok, std::string_view op, const std::string& what);
  bool CheckPlan(std::string_view op);
  // t has data, an activation dtype (F32/BF16), and (when >= 0) the given rows/cols.
  bool CheckActivation(std::string_view op, std::string_view name, const TensorView& t,
                       int64_t rows, int64_t cols);
  bool CheckSameDType(std::string_view op, std::initializer_list<const TensorView*> ts);
  // Norm weight or bias: F32 with `dim` elements (UploadWeight makes vectors F32).
  bool CheckVector(std::string_view op, std::string_view name, const TensorView& t, int64_t dim);

  // --- launching ---
  using LaunchFn = StepGraphs::LaunchFn;
  // Runs `fn` now with `rows`, or records it when a graph step is being recorded.
  // `row_tensors` are the tensors whose first dimension is the op's rows.
  void Launch(const KeyBuilder& key, int64_t rows,
              std::initializer_list<const TensorView*> row_tensors, LaunchFn fn);
  // True when `t`'s buffer holds `rows` rows of its columns.
  bool RowsFit(const TensorView& t, int64_t rows) const;
  // Ends a recorded step (runs or replays it) and flushes a deferred Rope.
  void FlushPending();
  void FlushRope();
  void EnqueueRopeKv(const PendingRope* rope, int layer, const TensorView* k,
                     const TensorView* v);
  absl::StatusOr<const float*> InverseFrequencies(const RopeParams& params);
  // Grows a scratch buffer; a move invalidates captured graphs.
  absl::Status ReserveScratch(GrowableDeviceBuffer& buffer, size_t bytes);
  void InvalidateGraphs();
  int DecodeSplits(int num_kv_heads) const;
  // Device collectives: checks that `group` enqueues on stream_; records a failure.
  bool CheckDeviceGroup(std::string_view op, const CollectiveGroup& group);
  // Before the host blocks on the stream: waits through the group (bounded, aborting it
  // on failure) for the device collectives issued since the last wait, so that a rank that
  // is gone becomes an error instead of a stream that never drains. False if it failed.
  bool WaitForCollectives();

  // --- memory helpers ---
  absl::Status UploadConverted(const TensorView& host, DType device_dtype, void* dst);
  absl::Status CopyHostToDevice(const void* src, void* dst, size_t bytes);
  absl::Status FreeKvCache();

  CudaBackendOptions options_;
  cudaStream_t stream_ = nullptr;
  cudaDeviceProp props_{};
  DeviceAllocator allocator_;
  std::unique_ptr<CublasLtGemm> gemm_;
  std::unique_ptr<StepBuffers> steps_;
  std::unique_ptr<StepGraphs> graphs_;
  GrowableDeviceBuffer gemm_in_{&allocator_};    // GEMM input converted to the weight dtype
  GrowableDeviceBuffer gemm_out_{&allocator_};   // fp32 GEMM output awaiting conversion
  GrowableDeviceBuffer attn_ws_{&allocator_};    // split-K decode partials
  GrowableDeviceBuffer staging_{&allocator_};    // weight upload conversions
  GrowableDeviceBuffer sample_ws_{&allocator_};  // sampling parameters and results
  GrowableDeviceBuffer kv_copy_ws_{&allocator_};  // CopyKvBlocks pairs
  PinnedBuffer pinned_;                          // host <-> device copies
  std::map<std::string, const float*> inv_freq_;  // by RopeParams, device arrays
  std::vector<void*> inv_freq_buffers_;

  KvCacheSpec kv_spec_;
  void* kv_base_ = nullptr;     // all layers' K and V
  size_t kv_layer_bytes_ = 0;   // one of K or V for one layer

  BatchPlan plan_;
  StepMetadata meta_;
  bool has_plan_ = false;
  std::optional<PendingRope> pending_rope_;
  CollectiveGroup* collectives_to_wait_ = nullptr;  // not owned; cleared by the wait
  absl::Status status_;
};

// Device dtype <-> kernel scalar type (Requires: F32, F16 or BF16).
kernels::ScalarType ToScalar(DType dtype);
bool IsActivationDType(DType dtype);

}  // namespace tokenmill::cuda
