// Loopback: N ranks as threads of one process, collectives through shared host memory.
// Tensor parallelism on every machine (the CPU backend uses it), and the fake that tests
// of sharded models inject.
//
// Determinism: each rank copies its input into its slot of a shared staging area; once all
// ranks have arrived, every rank computes the same sum over slots 0..N-1 in rank order.
// So all ranks get bit-identical results, whatever the thread timing, and a run repeats
// bit for bit.
//
// Each collective is one barrier (staging is double-buffered: a rank cannot overwrite a
// slot before every rank has left the collective that read it). Waiting is on a condition
// variable, never spinning, so ranks may outnumber cores.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokenmill/parallel/communicator.h"

namespace tokenmill {

struct LoopbackOptions {
  int world_size = 1;
  // Longest a rank waits inside one collective for the others. Past it the collective
  // fails with DEADLINE_EXCEEDED (naming the missing ranks) and the group is broken.
  absl::Duration timeout = absl::Minutes(5);
};

// Owns the shared state and the world_size communicators. Thread-safety: rank(r) is
// driven by one thread at a time; Abort() and status() may be called from any thread.
class LoopbackGroup {
 public:
  // INVALID_ARGUMENT unless 1 <= world_size <= 1024 and timeout > 0.
  static absl::StatusOr<std::unique_ptr<LoopbackGroup>> Create(const LoopbackOptions& options);
  ~LoopbackGroup();
  LoopbackGroup(const LoopbackGroup&) = delete;
  LoopbackGroup& operator=(const LoopbackGroup&) = delete;

  int world_size() const;
  // Rank r's communicator, owned by the group. Requires: 0 <= r < world_size().
  Communicator* rank(int r);

  // Breaks the group: collectives waiting now, and every later one, return `reason`
  // (which must not be OK). The first reason sticks.
  void Abort(const absl::Status& reason);
  // OK while the group works; otherwise why it broke (timeout, abort, mismatch).
  absl::Status status() const;

  struct State;  // shared by the ranks (loopback.cc)

 private:
  explicit LoopbackGroup(const LoopbackOptions& options);
  std::unique_ptr<State> state_;
  std::vector<std::unique_ptr<Communicator>> ranks_;
};

}  // namespace tokenmill
