// A worker of a multi-process tensor-parallel group: rank R of N in its own process, on
// this machine or another, serving a leader (`tokenmill serve|generate|bench
// --tensor-parallel N --bootstrap HOST:PORT`) that runs the engine and rank 0.
// `tokenmill worker` is the command around it; docs/parallel.md has the launch recipe.
//
// The worker joins the leader at `bootstrap` (retrying until join_timeout, so it may
// start before the leader), checks that it loaded the same model, takes its settings
// (backend, KV cache, step limits) from the leader, loads its shard, then runs each step
// the leader broadcasts (block copies, forward pass, the collectives) until the leader
// says stop.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tokenmill/model/weights.h"

namespace tokenmill {

struct WorkerOptions {
  int rank = 1;           // 1..world_size-1 (the leader is rank 0)
  int world_size = 2;     // the leader's --tensor-parallel
  std::string bootstrap;  // the leader's "host:port"
  // cuda: the GPU of this rank; -1: rank % (GPUs visible to this process).
  int device = -1;
  int num_threads = 0;  // cpu backend threads (0: every hardware thread)
  absl::Duration join_timeout = absl::Minutes(10);
};

// Returns OK when the leader ended the group cleanly (it stopped). Otherwise the reason
// the worker cannot go on, e.g. UNAVAILABLE "lost rank 0 (connection closed...)" when the
// leader's process died, DEADLINE_EXCEEDED when it went silent, FAILED_PRECONDITION when
// this worker's model differs from the leader's. `model` is the whole model, as loaded.
absl::Status RunTensorParallelWorker(const LoadedModel& model, const WorkerOptions& options);

}  // namespace tokenmill
