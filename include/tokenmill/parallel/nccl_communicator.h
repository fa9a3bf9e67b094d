// NCCL ranks: one Communicator per GPU, one thread per rank (ranks may also live in other
// processes or on other nodes). Built only when the build has CUDA and NCCL (target
// tm_parallel_nccl, which defines TOKENMILL_HAVE_NCCL); compiles and links without a GPU.
//
// Creation: every rank calls MakeNcclCommunicator at about the same time (NCCL's
// ncclCommInitRank blocks until all ranks have joined). The 128-byte NCCL unique id comes
// from rank 0: in one process pass it in `unique_id` (NcclGetUniqueId on any thread);
// across processes leave it empty, and the ranks exchange it over the TCP bootstrap at
// `bootstrap.address` (rank 0 listens there; see tcp_bootstrap.h and docs/parallel.md for
// TOKENMILL_NCCL_BOOTSTRAP and the NCCL_* settings an operator needs).
//
// Pointers are device pointers on `device` (memory_space() == kDevice). Collectives are
// enqueued on `stream` (a cudaStream_t; null: the communicator's own stream), so they are
// ordered after work already queued there. With `synchronous` the call also waits until
// the collective has finished, polling for NCCL errors, and fails with DEADLINE_EXCEEDED
// (aborting the communicator) past `timeout`; without it the call returns once enqueued
// and the result is ready when the stream reaches it (Synchronize() waits the same
// bounded way). While `stream` is being captured into a CUDA graph a collective is only
// recorded, never waited for. For the forward pass, create it on the rank's backend
// stream (Backend::device_stream()) with synchronous = false: the backend then orders the
// collectives with its ops and waits for them before it reads results on the host.
//
// Errors: a failed or timed-out collective aborts the NCCL communicator (ncclCommAbort);
// every later call returns the same Status.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokenmill/parallel/communicator.h"
#include "tokenmill/parallel/tcp_bootstrap.h"

namespace tokenmill {

struct NcclOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;              // CUDA device of this rank
  std::string unique_id;       // NcclGetUniqueId() bytes; empty: use the TCP bootstrap
  BootstrapOptions bootstrap;  // rank 0's host:port when unique_id is empty
  void* stream = nullptr;      // cudaStream_t for the collectives; null: own stream
  bool synchronous = true;
  absl::Duration timeout = absl::Minutes(5);  // communicator set-up, and each collective
};

// UNAVAILABLE without a driver or GPU. Any rank may call it; rank 0's bytes must reach all.
absl::StatusOr<std::string> NcclGetUniqueId();

// INVALID_ARGUMENT for a bad rank/world/device; UNAVAILABLE without a usable GPU;
// DEADLINE_EXCEEDED when the ranks do not all join within the timeout.
absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(const NcclOptions& options);

// CUDA devices visible to this process (0, never an error, without a driver or GPU).
int NcclVisibleDeviceCount();

// "2.28.9" (the NCCL library loaded at run time).
std::string NcclVersionString();

}  // namespace tokenmill
