#include "tokenmill/engine/distributed_worker.h"

#include "absl/strings/str_cat.h"
#include "engine/distributed_rank.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"
#include "tokenmill/parallel/tcp_communicator.h"
#ifdef TOKENMILL_HAVE_CUDA
#include "tokenmill/backend/cuda_backend.h"
#endif

namespace tokenmill {
namespace {

// The leader heartbeats every second while idle, so only a leader that hangs (or a
// network that does) leaves a worker waiting this long.
constexpr absl::Duration kCollectiveTimeout = absl::Minutes(5);

absl::Status CheckOptions(const WorkerOptions& o) {
  if (o.world_size < 2 || o.rank < 1 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker: --rank ", o.rank, " must be in [1, ", o.world_size,
                     ") (rank 0 is the leader; --tensor-parallel is the world size, at least 2)"));
  }
  return ParseHostPort(o.bootstrap).status();
}

int DeviceOf(const WorkerOptions& o, const std::string& backend) {
  if (o.device >= 0 || backend != "cuda") return std::max(o.device, 0);
#ifdef TOKENMILL_HAVE_CUDA
  const int n = CudaDeviceCount();
  return n > 0 ? o.rank % n : 0;
#else
  return 0;
#endif
}

// Joins, agrees on the model and settings, loads the shard.
absl::Status SetUp(const LoadedModel& model, const WorkerOptions& o, Communicator& control,
                   DistributedRank* rank) {
  TM_ASSIGN_OR_RETURN(auto first, ReceiveMessage(control));
  if (first.first != wire::MessageType::kConfig) {
    return absl::DataLossError(absl::StrCat("the leader's first message is a ",
                                            wire::MessageTypeName(first.first),
                                            ", not the group's settings"));
  }
  TM_ASSIGN_OR_RETURN(const wire::GroupConfig config, wire::DecodeGroupConfig(first.second));
  const std::string mine = wire::ModelFingerprint(model);
  absl::Status same = absl::OkStatus();
  if (mine != config.model) {
    same = absl::FailedPreconditionError(absl::StrCat("this worker loaded ", mine,
                                                      " but the leader runs ", config.model,
                                                      "; give every rank the same model"));
  }
  TM_RETURN_IF_ERROR(Agree(control, same, "match the leader's model"));
  const int device = DeviceOf(o, config.backend);
  TM_RETURN_IF_ERROR(rank->SetUp(model, config, control, device, o.num_threads));
  spdlog::info("worker rank {}/{} ready: {} backend{}, {} KV blocks of {} tokens, {} collectives",
               o.rank, o.world_size, config.backend,
               config.backend == "cuda" ? absl::StrCat(" on cuda:", device) : std::string(),
               config.num_kv_blocks, config.block_size, config.use_nccl ? "NCCL" : "tcp");
  return absl::OkStatus();
}

// Runs the leader's steps until it says stop.
absl::Status Serve(Communicator& control, DistributedRank& rank) {
  BatchPlan plan;
  int64_t steps = 0;
  for (;;) {
    TM_ASSIGN_OR_RETURN(auto message, ReceiveMessage(control));
    switch (message.first) {
      case wire::MessageType::kStop:
        spdlog::info("the leader stopped the group after {} step(s); worker exiting", steps);
        return absl::OkStatus();
      case wire::MessageType::kHeartbeat:
        continue;
      case wire::MessageType::kConfig:
        return absl::DataLossError("the leader sent its settings twice");
      case wire::MessageType::kStep:
        break;
    }
    TM_RETURN_IF_ERROR(wire::DecodeStep(message.second, &plan, &rank.copies));
    const absl::Status step = rank.RunStep(plan, &rank.logits);
    if (!step.ok()) spdlog::error("step {}: {}", steps, std::string(step.message()));
    // The leader fails the step if any rank did; a broken group ends the worker.
    const absl::Status outcome = Agree(control, step, "run the step");
    TM_RETURN_IF_ERROR(rank.GroupStatus(control));
    if (!outcome.ok() && step.ok()) {
      spdlog::warn("step {}: {}", steps, std::string(outcome.message()));
    }
    ++steps;
  }
}

}  // namespace

absl::Status RunTensorParallelWorker(const LoadedModel& model, const WorkerOptions& o) {
  TM_RETURN_IF_ERROR(CheckOptions(o));
  TcpCommunicatorOptions to;
  to.rank = o.rank;
  to.world_size = o.world_size;
  to.bootstrap = {.address = o.bootstrap, .timeout = o.join_timeout};
  to.timeout = kCollectiveTimeout;
  spdlog::info("worker rank {}/{}: joining the leader at {}", o.rank, o.world_size, o.bootstrap);
  TM_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> control, MakeTcpCommunicator(to));
  DistributedRank rank;
  TM_RETURN_IF_ERROR(SetUp(model, o, *control, &rank));
  return Serve(*control, rank);
}

}  // namespace tokenmill
