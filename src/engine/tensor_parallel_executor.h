// The tensor-parallel ModelExecutor (private to engine/; MakeModelExecutor builds it for
// tensor_parallel > 1).
//
// N ranks, each with its shard of the weights (ShardModel), its own backend, LlamaModel
// and KV cache (every rank holds the same block ids for its KV heads). Rank 0 runs on the
// caller's thread, ranks 1..N-1 on threads the executor owns. Each Execute() hands the
// same plan and block copies to every rank; the ranks meet in the communicator inside
// the forward pass, and rank 0's logits (the whole vocabulary) are returned. An error on
// any rank fails the step; a broken communicator (timeout, a rank that died) fails this
// step and, with UNAVAILABLE, every later one.
//
// How ranks meet:
//   - cpu: a loopback group (threads of this process, host-memory collectives);
//     num_threads is per rank, 0 divides the hardware threads among the ranks.
//   - cuda: rank r runs on GPU r. Builds with NCCL give each rank an NCCL communicator on
//     its backend's stream (unique id shared in process; collectives are device ops, in
//     CUDA graphs too). Without NCCL, a loopback group staged through host memory.
//     More ranks than GPUs is an error.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tokenmill/engine/model_executor.h"

namespace tokenmill {

// Requires: options.tensor_parallel > 1. Errors name what does not fit (heads not
// divisible, more ranks than GPUs, a backend without tensor parallelism).
absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeTensorParallelExecutor(
    const LoadedModel& model, const ExecutorOptions& options);

}  // namespace tokenmill
