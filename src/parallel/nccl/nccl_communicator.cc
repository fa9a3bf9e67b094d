#include "tokenmill/parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

absl::Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("NCCL communicator: ", what, ": ", cudaGetErrorString(e)));
}

absl::Status NcclStatus(ncclResult_t r, ncclComm_t comm, const char* what) {
  if (r == ncclSuccess || r == ncclInProgress) return absl::OkStatus();
  const char* detail = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  return absl::InternalError(absl::StrCat(
      "NCCL ", what, ": ", ncclGetErrorString(r), detail != nullptr && *detail ? " (" : "",
      detail != nullptr ? detail : "", detail != nullptr && *detail ? ")" : ""));
}

// Polling interval while a non-blocking NCCL call or a collective is in flight: short
// enough for decode steps, long enough not to burn a core that other ranks need.
constexpr absl::Duration kPollInterval = absl::Microseconds(20);

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const NcclOptions& options) : options_(options) {}

  ~NcclCommunicator() override {
    (void)cudaSetDevice(options_.device);
    if (comm_ != nullptr) {
      // Finalize flushes outstanding work; a communicator that cannot finish is aborted
      // (WaitAsync aborts it on failure and clears comm_).
      const ncclResult_t r = ncclCommFinalize(comm_);
      const bool finished = (r == ncclSuccess || r == ncclInProgress) &&
                            WaitAsync(absl::Now() + absl::Seconds(10), "ncclCommFinalize").ok();
      if (comm_ != nullptr) {
        if (finished) {
          ncclCommDestroy(comm_);
        } else {
          ncclCommAbort(comm_);
        }
      }
    }
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (own_stream_ != nullptr) cudaStreamDestroy(own_stream_);
  }

  absl::Status Init() {
    TM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice"));
    std::string id = options_.unique_id;
    if (id.empty()) {
      std::string mine;
      if (options_.rank == 0) {
        TM_ASSIGN_OR_RETURN(mine, NcclGetUniqueId());
      }
      TM_ASSIGN_OR_RETURN(id, ExchangeBootstrapPayload(options_.bootstrap, options_.rank,
                                                       options_.world_size, mine));
    }
    if (id.size() != sizeof(ncclUniqueId)) {
      return absl::InvalidArgumentError(absl::StrCat("NCCL unique id has ", id.size(),
                                                     " bytes; expected ", sizeof(ncclUniqueId)));
    }
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof(uid));
    stream_ = static_cast<cudaStream_t>(options_.stream);
    if (stream_ == nullptr) {
      TM_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking),
                                    "cudaStreamCreate"));
      stream_ = own_stream_;
    }
    TM_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc"));
    // Non-blocking: a rank that never joins becomes a timeout here, not a hang.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r =
        ncclCommInitRankConfig(&comm_, options_.world_size, uid, options_.rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      comm_ = nullptr;
      return NcclStatus(r, nullptr, "ncclCommInitRank");
    }
    TM_RETURN_IF_ERROR(WaitAsync(absl::Now() + options_.timeout, "ncclCommInitRank"));
    spdlog::info("NCCL rank {}/{} on cuda:{} ready (NCCL {})", options_.rank, options_.world_size,
                 options_.device, NcclVersionString());
    return absl::OkStatus();
  }

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  MemorySpace memory_space() const override { return MemorySpace::kDevice; }

  absl::Status AllReduceSum(float* data, int64_t count) override {
    return Collective("ncclAllReduce", count, [&] {
      return ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_,
                           stream_);
    });
  }

  absl::Status AllGather(const float* send, int64_t count, float* recv) override {
    return Collective("ncclAllGather", count, [&] {
      return ncclAllGather(send, recv, static_cast<size_t>(count), ncclFloat32, comm_, stream_);
    });
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    if (root < 0 || root >= options_.world_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("NCCL Broadcast: root ", root, " is not a rank of ", options_.world_size));
    }
    return Collective("ncclBroadcast", bytes, [&] {
      return ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm_, stream_);
    });
  }

  // NCCL has no barrier: a one-float all-reduce, waited for, is one.
  absl::Status Barrier() override {
    const bool was_synchronous = options_.synchronous;
    options_.synchronous = true;
    absl::Status s = AllReduceSum(scratch_, 1);
    options_.synchronous = was_synchronous;
    return s;
  }

  absl::Status status() const override { return broken_; }
  void* stream() const override { return stream_; }

  absl::Status Synchronize() override {
    if (!broken_.ok() || comm_ == nullptr) return broken_;
    TM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice"));
    return WaitStream(absl::Now() + options_.timeout, "Synchronize");
  }

 private:
  template <typename Enqueue>
  absl::Status Collective(const char* what, int64_t count, Enqueue enqueue) {
    if (!broken_.ok()) return broken_;
    if (count < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative count"));
    if (count == 0) return absl::OkStatus();
    TM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice"));
    const absl::Time deadline = absl::Now() + options_.timeout;
    if (absl::Status s = NcclStatus(enqueue(), comm_, what); !s.ok()) return Fail(s);
    TM_RETURN_IF_ERROR(WaitAsync(deadline, what));
    if (!options_.synchronous) return absl::OkStatus();
    // While a backend captures the stream into a CUDA graph, the collective is only being
    // recorded: querying the stream would invalidate the capture.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    TM_RETURN_IF_ERROR(CudaStatus(cudaStreamIsCapturing(stream_, &capture), what));
    if (capture != cudaStreamCaptureStatusNone) return absl::OkStatus();
    return WaitStream(deadline, what);
  }

  // Polls the stream until it has drained. NCCL kernels spin while a peer is missing, so
  // a plain cudaStreamSynchronize could wait forever: past the deadline, or on an error
  // NCCL reports, the communicator is aborted (which releases the kernels).
  absl::Status WaitStream(absl::Time deadline, const char* what) {
    for (;;) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return absl::OkStatus();
      if (q != cudaErrorNotReady) return Fail(CudaStatus(q, what));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        return Fail(NcclStatus(async, comm_, what));
      }
      if (absl::Now() > deadline) {
        return Fail(absl::DeadlineExceededError(
            absl::StrCat(what, " on rank ", options_.rank, " did not finish within ",
                         absl::FormatDuration(options_.timeout), " (is every rank alive?)")));
      }
      std::this_thread::sleep_for(absl::ToChronoMicroseconds(kPollInterval));
    }
  }

  // Waits for a non-blocking NCCL call to leave ncclInProgress.
  absl::Status WaitAsync(absl::Time deadline, const char* what) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) return Fail(NcclStatus(r, comm_, what));
      if (state == ncclSuccess) return absl::OkStatus();
      if (state != ncclInProgress) return Fail(NcclStatus(state, comm_, what));
      if (absl::Now() > deadline) {
        return Fail(absl::DeadlineExceededError(
            absl::StrCat(what, " on rank ", options_.rank, " of ", options_.world_size,
                         " did not complete within ", absl::FormatDuration(options_.timeout),
                         " (did every rank join?)")));
      }
      std::this_thread::sleep_for(absl::ToChronoMicroseconds(kPollInterval));
    }
  }

  absl::Status Fail(const absl::Status& reason) {
    if (broken_.ok()) broken_ = reason;
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    return broken_;
  }

  NcclOptions options_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaStream_t own_stream_ = nullptr;
  float* scratch_ = nullptr;  // device float for Barrier()
  absl::Status broken_;
};

}  // namespace

absl::StatusOr<std::string> NcclGetUniqueId() {
  if (NcclVisibleDeviceCount() == 0) {
    return absl::UnavailableError("NCCL: no CUDA device is visible");
  }
  ncclUniqueId id;
  TM_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), nullptr, "ncclGetUniqueId"));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(const NcclOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL: rank ", options.rank, " is not in a world of ", options.world_size));
  }
  const int devices = NcclVisibleDeviceCount();
  if (options.device < 0 || options.device >= devices) {
    return devices == 0 ? absl::UnavailableError("NCCL: no CUDA device is visible")
                        : absl::InvalidArgumentError(absl::StrCat("NCCL: device ", options.device,
                                                                  " is not one of the ", devices,
                                                                  " visible devices"));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("NCCL: timeout must be positive");
  }
  auto comm = std::make_unique<NcclCommunicator>(options);
  TM_RETURN_IF_ERROR(comm->Init());
  return comm;
}

int NcclVisibleDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error for later callers
    return 0;
  }
  return n;
}

std::string NcclVersionString() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return absl::StrCat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

}  // namespace tokenmill
