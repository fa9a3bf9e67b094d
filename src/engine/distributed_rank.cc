#include "engine/distributed_rank.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"
#include "tokenmill/backend/cpu_backend.h"
#include "tokenmill/core/status.h"
#include "tokenmill/model/sharding.h"
#ifdef TOKENMILL_HAVE_CUDA
#include "tokenmill/backend/cuda_backend.h"
#endif
#ifdef TOKENMILL_HAVE_NCCL
#include "tokenmill/parallel/nccl_communicator.h"
#endif

namespace tokenmill {
namespace {

// How long a rank waits in a collective for the others. Ranks do equal work between
// collectives, so a long wait means a rank is gone, not slow.
constexpr absl::Duration kCollectiveTimeout = absl::Minutes(5);

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeRankBackend(const std::string& backend,
                                                         [[maybe_unused]] int device,
                                                         int num_threads) {
  if (backend == "cpu") return MakeCpuBackend({.num_threads = num_threads});
#ifdef TOKENMILL_HAVE_CUDA
  if (backend == "cuda") {
    CudaBackendOptions cuda;
    cuda.device = device;
    return MakeCudaBackend(cuda);
  }
#endif
  return absl::InvalidArgumentError(
      absl::StrCat("backend '", backend, "' has no tensor parallelism in this build"));
}

absl::Status SendMessage(Communicator& control, wire::MessageType type,
                         const std::string& payload) {
  char header[wire::kHeaderBytes];
  wire::EncodeHeader({type, static_cast<int64_t>(payload.size())}, header);
  TM_RETURN_IF_ERROR(control.Broadcast(header, wire::kHeaderBytes, 0));
  if (payload.empty()) return absl::OkStatus();
  // Broadcast takes a mutable buffer; rank 0's is only read.
  return control.Broadcast(const_cast<char*>(payload.data()), static_cast<int64_t>(payload.size()),
                           0);
}

absl::StatusOr<std::pair<wire::MessageType, std::string>> ReceiveMessage(Communicator& control) {
  char header[wire::kHeaderBytes] = {};
  TM_RETURN_IF_ERROR(control.Broadcast(header, wire::kHeaderBytes, 0));
  TM_ASSIGN_OR_RETURN(const wire::Header h, wire::DecodeHeader(header));
  std::string payload(static_cast<size_t>(h.payload_bytes), '\0');
  if (h.payload_bytes > 0) {
    TM_RETURN_IF_ERROR(control.Broadcast(payload.data(), h.payload_bytes, 0));
  }
  return std::make_pair(h.type, std::move(payload));
}

absl::Status Agree(Communicator& control, const absl::Status& mine, std::string_view phase) {
  const int n = control.world_size();
  const float failed = mine.ok() ? 0.0f : 1.0f;
  std::vector<float> all(n);
  TM_RETURN_IF_ERROR(control.AllGather(&failed, 1, all.data()));
  if (!mine.ok()) return mine;
  std::vector<int> bad;
  for (int r = 0; r < n; ++r) {
    if (all[r] != 0.0f) bad.push_back(r);
  }
  if (bad.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("tensor-parallel rank(s) ",
                                                    absl::StrJoin(bad, ", "), " could not ",
                                                    std::string(phase), "; their logs say why"));
}

absl::Status DistributedRank::SetUp(const LoadedModel& model, const wire::GroupConfig& config,
                                    Communicator& control, int device, int num_threads) {
  const int rank = control.rank(), n = control.world_size();
  absl::StatusOr<std::unique_ptr<Backend>> b = MakeRankBackend(config.backend, device, num_threads);
  if (b.ok()) backend = *std::move(b);
  TM_RETURN_IF_ERROR(Agree(control, b.status(), "create their backend"));
  collectives = &control;
  if (config.use_nccl) {
#ifdef TOKENMILL_HAVE_NCCL
    NcclOptions o;
    o.rank = rank;
    o.world_size = n;
    o.device = device;
    o.unique_id = config.nccl_unique_id;
    o.stream = backend->device_stream();
    o.synchronous = false;  // the backend orders and waits (LlamaModel, backend.h)
    o.timeout = kCollectiveTimeout;
    absl::StatusOr<std::unique_ptr<Communicator>> c = MakeNcclCommunicator(o);
    if (c.ok()) nccl = *std::move(c);
    TM_RETURN_IF_ERROR(Agree(control, c.status(), "join NCCL"));
    collectives = nccl.get();
#else
    TM_RETURN_IF_ERROR(Agree(
        control, absl::FailedPreconditionError("the leader uses NCCL, and this build has none"),
        "join NCCL"));
#endif
  }
  auto load = [&]() -> absl::Status {
    TM_ASSIGN_OR_RETURN(shard, ShardModel(model, rank, n));
    LlamaModelOptions mo;
    mo.max_num_tokens = config.max_num_tokens;
    mo.max_num_logits = config.max_num_logits;
    mo.communicator = collectives;
    TM_ASSIGN_OR_RETURN(this->model, LlamaModel::Create(*shard, backend.get(), mo));
    return backend->AllocateKvCache(this->model->KvSpec(config.num_kv_blocks, config.block_size));
  };
  return Agree(control, load(), "load their shard");
}

absl::Status DistributedRank::RunStep(const BatchPlan& plan, std::vector<float>* out) {
  if (!copies.empty()) backend->CopyKvBlocks(copies);
  return model->Forward(plan, out);
}

absl::Status DistributedRank::GroupStatus(const Communicator& control) const {
  TM_RETURN_IF_ERROR(control.status());
  return nccl != nullptr ? nccl->status() : absl::OkStatus();
}

}  // namespace tokenmill
