// One rank of a multi-process tensor-parallel group, the parts the leader
// (distributed_executor.cc) and the workers (distributed_worker.cc) share (private to
// engine/): the control messages over the group's TCP communicator, the set-up every rank
// goes through in step, and one step's work.
//
// Set-up, on every rank in the same order, each phase ending in an agreement (every rank
// says whether its part worked; one failure fails all, naming the rank):
//   1. the leader broadcasts the GroupConfig; workers check they loaded the same model;
//   2. each rank creates its backend (cuda: device `device`);
//   3. cuda with NCCL: each rank joins NCCL on its backend's stream (the unique id came in
//      the config, i.e. over the same TCP bootstrap);
//   4. each rank shards the model, uploads its shard and allocates its KV cache.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/step_wire.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/model/llama_model.h"
#include "tokenmill/parallel/communicator.h"

namespace tokenmill {

// Rank r's backend: the CPU backend with `num_threads`, or the CUDA backend on `device`.
absl::StatusOr<std::unique_ptr<Backend>> MakeRankBackend(const std::string& backend, int device,
                                                         int num_threads);

// Sends / receives one control message (header, then payload) over `control`, rank 0 to
// all. Every rank of the group calls these in the same order.
absl::Status SendMessage(Communicator& control, wire::MessageType type,
                         const std::string& payload = "");
absl::StatusOr<std::pair<wire::MessageType, std::string>> ReceiveMessage(Communicator& control);

// Every rank says whether `phase` worked for it (`mine`): returns `mine` when it failed,
// otherwise OK when every rank succeeded, else FAILED_PRECONDITION naming the ranks that
// did not ("rank(s) 1 could not <phase>; their logs say why"). A broken control group is
// its own error.
absl::Status Agree(Communicator& control, const absl::Status& mine, std::string_view phase);

struct DistributedRank {
  // Declared in destruction order's reverse: the model goes first, then NCCL, then the
  // backend whose stream NCCL used.
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Communicator> nccl;
  std::unique_ptr<LoadedModel> shard;
  std::unique_ptr<LlamaModel> model;
  Communicator* collectives = nullptr;  // nccl, or the control group (cpu)
  std::vector<std::pair<int32_t, int32_t>> copies;
  std::vector<float> logits;

  // Phases 2-4 above for rank control.rank() of `model` (`config` already agreed on).
  absl::Status SetUp(const LoadedModel& model, const wire::GroupConfig& config,
                     Communicator& control, int device, int num_threads);
  // This rank's part of a step: the block copies, then the forward pass (which meets the
  // other ranks in the collectives).
  absl::Status RunStep(const BatchPlan& plan, std::vector<float>* logits);
  // Why the group is broken (NCCL's or the control group's failure), or OK.
  absl::Status GroupStatus(const Communicator& control) const;
};

}  // namespace tokenmill
