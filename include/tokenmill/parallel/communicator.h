// Communicator: the collectives tensor parallelism needs, across the `world_size` ranks of
// one group. Injected into the model (LlamaModelOptions::communicator), never global, so
// tests pass a loopback group and a GPU build passes NCCL ranks.
//
// Every collective is called by all ranks of the group, in the same order, with the same
// count (a collective is matched by its position in that order). A rank that stops
// calling leaves the others waiting until their timeout.
//
// Memory: memory_space() says where the pointers must point. kHost (loopback): host
// memory, and the call returns when the result is in the buffer. kDevice (NCCL): device
// memory of the rank's GPU; the collectives are enqueued on stream() and the result is
// ready when that stream reaches them (Synchronize() waits for it, with the timeout).
//
// Errors: a timeout, an aborted group or ranks that disagree on a collective's count or
// kind return a Status (DEADLINE_EXCEEDED, ABORTED, INTERNAL...). After a failure the
// group is broken: later collectives on any rank fail fast with the same reason.
//
// Thread-safety: one communicator is one rank, driven by one thread at a time (the rank's
// thread). Different ranks of a group run on different threads (or processes).
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace tokenmill {

enum class MemorySpace {
  kHost,    // plain host pointers
  kDevice,  // pointers into the rank's GPU memory
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual MemorySpace memory_space() const = 0;

  // data[i] = sum over ranks r = 0..world_size-1 of data_r[i], in place. `count` floats.
  virtual absl::Status AllReduceSum(float* data, int64_t count) = 0;
  // recv[r * count + i] = send_r[i] (rank-major). recv holds world_size * count floats;
  // send may be recv + rank * count (in place).
  virtual absl::Status AllGather(const float* send, int64_t count, float* recv) = 0;
  // Copies `bytes` bytes at `data` on rank `root` into `data` on every rank.
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;
  // Returns once every rank has called Barrier().
  virtual absl::Status Barrier() = 0;

  // OK while the group works; otherwise why it broke (the Status every later collective
  // returns). Cheap; for the rank's thread, or any thread while the rank is idle.
  virtual absl::Status status() const = 0;

  // kDevice: the cudaStream_t the collectives are enqueued on (a backend that queues its
  // ops on that stream orders them with its own work). Null for kHost.
  virtual void* stream() const { return nullptr; }
  // Waits until every collective this rank has issued has finished. kHost collectives
  // finish before they return (OK at once). kDevice: polls the stream and the library's
  // errors and fails (breaking the group, so that no kernel waits forever for a rank that
  // is gone) past the timeout.
  virtual absl::Status Synchronize() { return status(); }
};

}  // namespace tokenmill
