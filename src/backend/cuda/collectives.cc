// CudaBackend collectives. A device group (NCCL created on this backend's stream) runs
// as one more op: ordered after the ops before it by the stream itself, recorded into a
// decode step's CUDA graph like a kernel (NCCL supports capture), so tensor parallelism
// keeps graph replay. A host group (loopback ranks) is staged through host memory.
#include "absl/strings/str_cat.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"

namespace tokenmill::cuda {

bool CudaBackend::CheckDeviceGroup(std::string_view op, const CollectiveGroup& group) {
  return Check(group.device_stream() == stream_, op,
               "the group enqueues on another stream than this backend's; create the "
               "communicator with NcclOptions::stream = backend.device_stream()");
}

absl::Status CudaBackend::AllReduceSum(CollectiveGroup& group, TensorView t) {
  constexpr std::string_view kOp = "AllReduceSum";
  if (group.device_stream() == nullptr) return Backend::AllReduceSum(group, t);
  FlushRope();
  if (!status_.ok()) return status_;
  if (!CheckDeviceGroup(kOp, group) || !CheckActivation(kOp, "t", t, -1, -1) ||
      !Check(t.dtype == DType::kF32, kOp, "t must be F32")) {
    return status_;
  }
  const int64_t cols = t.Cols();
  KeyBuilder key;
  key.Add(kOp).Add(t.data, cols, static_cast<const void*>(&group));
  collectives_to_wait_ = &group;
  // A recorded step runs with the bucket's padded rows: every rank pads alike (same plan,
  // same buckets), so the ranks still agree on the count.
  CollectiveGroup* g = &group;
  Launch(key, t.Rows(), {&t},
         [=](cudaStream_t, int64_t rows) { return g->AllReduceSum(t.As<float>(), rows * cols); });
  return status_;
}

absl::Status CudaBackend::AllGather(CollectiveGroup& group, const TensorView& send,
                                    TensorView recv) {
  constexpr std::string_view kOp = "AllGather";
  if (group.device_stream() == nullptr) return Backend::AllGather(group, send, recv);
  // The gather's count is the step's real size, not a graph bucket's: end a recorded step
  // here and gather eagerly after it.
  FlushPending();
  if (!status_.ok()) return status_;
  const int64_t count = send.NumElements();
  const bool shapes_ok = send.dtype == DType::kF32 && recv.dtype == DType::kF32 &&
                         recv.NumElements() == group.world_size() * count &&
                         allocator_.BytesAvailable(send.data) >= send.NumBytes() &&
                         allocator_.BytesAvailable(recv.data) >= recv.NumBytes();
  if (!CheckDeviceGroup(kOp, group) ||
      !Check(shapes_ok, kOp,
             absl::StrCat("send ", send.shape.ToString(), " and recv ", recv.shape.ToString(),
                          " must be F32 memory of this backend, recv holding ", group.world_size(),
                          " x send's elements"))) {
    return status_;
  }
  collectives_to_wait_ = &group;
  absl::Status s = TM_CUDA_STATUS(cudaSetDevice(options_.device));
  if (s.ok()) s = group.AllGather(send.As<float>(), count, recv.As<float>());
  if (!s.ok()) Fail(s);
  return status_;
}

bool CudaBackend::WaitForCollectives() {
  if (collectives_to_wait_ == nullptr) return true;
  CollectiveGroup* group = collectives_to_wait_;
  collectives_to_wait_ = nullptr;
  absl::Status s = group->Synchronize();
  if (s.ok()) return true;
  Fail(std::move(s));
  return false;
}

}  // namespace tokenmill::cuda
