// The leader of a multi-process tensor-parallel group (private to engine/;
// MakeTensorParallelExecutor builds it when ExecutorOptions::bootstrap is set).
//
// This process runs the engine and rank 0; ranks 1..N-1 are `tokenmill worker` processes
// (on this machine or others) that join at `bootstrap` (host:port, where this process
// listens), load their shard, and then run every step the leader sends them. The control
// path is a TCP communicator (tcp_communicator.h) through which the leader broadcasts the
// group's settings and then each step's BatchPlan and block copies; the forward pass's
// collectives run on the same TCP group (cpu) or on NCCL (cuda, unique id sent the same
// way). After each step the ranks agree on its outcome, so a step that failed anywhere
// fails everywhere.
//
// Liveness: while the engine is idle the leader sends a heartbeat every second, so a
// worker that died is noticed within about a second (and workers never time out on an
// idle leader). A lost rank breaks the group for good: this step and every later one fail
// with UNAVAILABLE, and ExecutorOptions::on_fatal is called once (the daemon exits). On
// destruction the leader tells the workers to stop, and they exit cleanly.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tokenmill/engine/model_executor.h"

namespace tokenmill {

// Requires: options.tensor_parallel > 1 and a non-empty options.bootstrap. Blocks until
// every worker has joined and loaded its shard (or fails naming the ranks that did not).
absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeDistributedExecutor(
    const LoadedModel& model, const ExecutorOptions& options);

}  // namespace tokenmill
