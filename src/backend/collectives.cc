// Backend's default collectives: staged through host memory, so that any backend runs
// with a host group (loopback ranks) at the price of two copies per call. Backends whose
// tensors are host memory (cpu), or that can order device collectives on their stream
// (cuda), override them.
#include <vector>

#include "absl/strings/str_cat.h"
#include "tokenmill/backend/backend.h"

namespace tokenmill {
namespace {

absl::Status CheckStaged(const Backend& b, const CollectiveGroup& group, const char* what,
                         const TensorView& t) {
  if (group.device_stream() != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": backend '", std::string(b.Name()),
                     "' cannot run device-memory collectives (NCCL); give it a host communicator"));
  }
  if (t.dtype != DType::kF32 || (t.data == nullptr && t.NumElements() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": tensor ", t.shape.ToString(), " ",
                                                   std::string(DTypeName(t.dtype)),
                                                   " must be F32 memory of the backend"));
  }
  return absl::OkStatus();
}

// One staging area per thread: a backend is driven by one thread (its rank's), and a
// collective per layer must not allocate.
std::vector<float>& Staging(int which, size_t count) {
  thread_local std::vector<float> buffers[2];
  if (buffers[which].size() < count) buffers[which].resize(count);
  return buffers[which];
}

}  // namespace

absl::Status Backend::AllReduceSum(CollectiveGroup& group, TensorView t) {
  if (absl::Status s = CheckStaged(*this, group, "AllReduceSum", t); !s.ok()) return s;
  const int64_t count = t.NumElements();
  std::vector<float>& host = Staging(0, static_cast<size_t>(count));
  CopyToHost(t, host.data());
  if (absl::Status s = group.AllReduceSum(host.data(), count); !s.ok()) return s;
  CopyFromHost(host.data(), t);
  return absl::OkStatus();
}

absl::Status Backend::AllGather(CollectiveGroup& group, const TensorView& send, TensorView recv) {
  if (absl::Status s = CheckStaged(*this, group, "AllGather", send); !s.ok()) return s;
  if (absl::Status s = CheckStaged(*this, group, "AllGather", recv); !s.ok()) return s;
  const int64_t count = send.NumElements();
  if (recv.NumElements() != group.world_size() * count) {
    return absl::InvalidArgumentError(absl::StrCat("AllGather: recv ", recv.shape.ToString(),
                                                   " must hold ", group.world_size(), " x ", count,
                                                   " elements"));
  }
  std::vector<float>& in = Staging(0, static_cast<size_t>(count));
  std::vector<float>& out = Staging(1, static_cast<size_t>(recv.NumElements()));
  CopyToHost(send, in.data());
  if (absl::Status s = group.AllGather(in.data(), count, out.data()); !s.ok()) return s;
  CopyFromHost(out.data(), recv);
  return absl::OkStatus();
}

}  // namespace tokenmill
