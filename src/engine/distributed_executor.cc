#include "engine/distributed_executor.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "engine/distributed_rank.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"
#include "tokenmill/kv/kv_cache_config.h"
#include "tokenmill/model/sharding.h"
#include "tokenmill/parallel/tcp_communicator.h"
#ifdef TOKENMILL_HAVE_CUDA
#include "tokenmill/backend/cuda_backend.h"
#endif
#ifdef TOKENMILL_HAVE_NCCL
#include "tokenmill/parallel/nccl_communicator.h"
#endif

namespace tokenmill {
namespace {

// Workers may be started after the leader, and on other machines.
constexpr absl::Duration kJoinTimeout = absl::Minutes(10);
// How long a rank waits in a collective for the others (they do equal work, so a long
// wait means a rank is gone).
constexpr absl::Duration kCollectiveTimeout = absl::Minutes(5);
constexpr absl::Duration kHeartbeatInterval = absl::Seconds(1);

class DistributedExecutor final : public ModelExecutor {
 public:
  DistributedExecutor(const ModelConfig& config, const ExecutorOptions& options)
      : config_(config), options_(options) {}

  ~DistributedExecutor() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    // Only a group that finished its set-up runs steps; one that failed it has told the
    // workers already.
    const bool was_ready = heartbeat_.joinable();
    if (was_ready) heartbeat_.join();
    std::lock_guard<std::mutex> lock(mu_);
    if (was_ready && broken_.ok()) {
      // The workers exit 0 on this; a leader that vanishes without it makes them fail.
      if (absl::Status s = SendMessage(*control_, wire::MessageType::kStop); !s.ok()) {
        spdlog::warn("tensor parallelism: could not tell the workers to stop: {}",
                     std::string(s.message()));
      }
    }
  }

  absl::Status Init(const LoadedModel& model) {
    const int n = options_.tensor_parallel;
    TM_ASSIGN_OR_RETURN(
        std::unique_ptr<BootstrapServer> server,
        BootstrapServer::Listen({.address = options_.bootstrap, .timeout = kJoinTimeout}));
    // Tests and operators read the port (port 0 picks a free one) from this line.
    spdlog::info("tensor-parallel leader listening on {} (port {}): waiting for {} worker(s)",
                 options_.bootstrap, server->port(), n - 1);
    TcpCommunicatorOptions to;
    to.rank = 0;
    to.world_size = n;
    to.bootstrap = {.address = options_.bootstrap, .timeout = kJoinTimeout};
    to.timeout = kCollectiveTimeout;
    TM_ASSIGN_OR_RETURN(control_, MakeTcpCommunicator(*server, to));
    spdlog::info("tensor parallelism: {} worker(s) joined", n - 1);
    TM_ASSIGN_OR_RETURN(const wire::GroupConfig config, MakeConfig(model));
    TM_RETURN_IF_ERROR(
        SendMessage(*control_, wire::MessageType::kConfig, wire::EncodeGroupConfig(config)));
    TM_RETURN_IF_ERROR(Agree(*control_, absl::OkStatus(), "match the leader's model"));
    TM_RETURN_IF_ERROR(rank_.SetUp(model, config, *control_, /*device=*/0, options_.num_threads));
    spec_ = rank_.model->KvSpec(config.num_kv_blocks, config.block_size);
    uses_nccl_ = config.use_nccl;
    last_message_ = absl::Now();
    heartbeat_ = std::thread([this] { HeartbeatLoop(); });
    return absl::OkStatus();
  }

  const ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return spec_.num_blocks; }
  int block_size() const override { return spec_.block_size; }
  int max_num_tokens() const override { return options_.max_num_tokens; }
  int max_num_logits() const override { return options_.max_num_logits; }

  absl::Status Execute(const BatchPlan& plan, std::span<const BlockCopy> copies,
                       std::vector<float>* logits) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!broken_.ok()) return broken_;
    rank_.copies.clear();
    for (const BlockCopy& c : copies) rank_.copies.emplace_back(c.src, c.dst);
    absl::Status sent =
        SendMessage(*control_, wire::MessageType::kStep, wire::EncodeStep(plan, copies));
    const absl::Status step = sent.ok() ? rank_.RunStep(plan, logits) : sent;
    // Every rank says how its part went: a step that failed anywhere fails here too.
    const absl::Status outcome = sent.ok() ? Agree(*control_, step, "run the step") : sent;
    last_message_ = absl::Now();
    if (absl::Status group = rank_.GroupStatus(*control_); !group.ok()) Break(group);
    return broken_.ok() ? outcome : broken_;
  }

  std::string Describe() const override {
    return absl::StrCat(std::string(rank_.backend->Name()), " x", options_.tensor_parallel,
                        " ranks in ", options_.tensor_parallel,
                        " processes (rank 0 here, workers joined at ", options_.bootstrap,
                        uses_nccl_ ? "; NCCL collectives)" : "; tcp collectives)", ", ",
                        spec_.num_blocks, " KV blocks of ", spec_.block_size, " tokens per rank");
  }

 private:
  absl::StatusOr<wire::GroupConfig> MakeConfig(const LoadedModel& model) {
    wire::GroupConfig c;
    c.backend = options_.backend;
    c.block_size = options_.block_size;
    c.max_num_tokens = options_.max_num_tokens;
    c.max_num_logits = options_.max_num_logits;
    c.model = wire::ModelFingerprint(model);
#ifdef TOKENMILL_HAVE_NCCL
    if (c.backend == "cuda") {
      c.use_nccl = true;
      TM_ASSIGN_OR_RETURN(c.nccl_unique_id, NcclGetUniqueId());
    }
#endif
    c.num_kv_blocks = options_.num_kv_blocks;
    if (c.num_kv_blocks <= 0) {
      // As LlamaModel::KvSpec for rank 0's shard (every rank holds as many KV heads).
      const ModelConfig& m = model.config;
      KvCacheSpec one{.num_layers = m.num_layers,
                      .num_blocks = 1,
                      .block_size = c.block_size,
                      .num_kv_heads = KvHeadShard(m, 0, options_.tensor_parallel).size,
                      .head_dim = m.head_dim,
                      .dtype = DType::kF32};
      TM_ASSIGN_OR_RETURN(
          c.num_kv_blocks,
          NumBlocksForBudget(options_.kv_cache_bytes, static_cast<int64_t>(one.BytesPerToken()),
                             c.block_size));
    }
    return c;
  }

  // While the engine is idle, proves every rank alive (a Broadcast is a round trip to
  // every worker) and keeps the workers' waits short of their timeout.
  void HeartbeatLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      wake_.wait_for(lock, absl::ToChronoMilliseconds(kHeartbeatInterval));
      if (stop_ || !broken_.ok() || absl::Now() - last_message_ < kHeartbeatInterval) continue;
      const absl::Status s = SendMessage(*control_, wire::MessageType::kHeartbeat);
      last_message_ = absl::Now();
      if (!s.ok()) Break(s);
    }
  }

  void Break(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!broken_.ok()) return;
    broken_ = absl::UnavailableError(absl::StrCat("tensor-parallel group lost (",
                                                  std::string(why.message()),
                                                  "); restart the leader and its workers"));
    spdlog::error("{}", std::string(broken_.message()));
    if (options_.on_fatal) options_.on_fatal(broken_);
  }

  ModelConfig config_;
  ExecutorOptions options_;
  bool uses_nccl_ = false;
  KvCacheSpec spec_;
  std::unique_ptr<Communicator> control_;  // outlives rank_ (declared first)
  DistributedRank rank_;

  // The control group is driven by one thread at a time: the step thread in Execute(),
  // or the heartbeat between steps.
  std::mutex mu_;  // not absl::Mutex: see parallel/loopback.cc (ThreadSanitizer)
  std::condition_variable wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_message_ ABSL_GUARDED_BY(mu_);
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  std::thread heartbeat_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeDistributedExecutor(
    const LoadedModel& model, const ExecutorOptions& options) {
  const int n = options.tensor_parallel;
  TM_CHECK(n > 1 && !options.bootstrap.empty(), "tensor_parallel ", n);
  TM_RETURN_IF_ERROR(CheckShardable(model, n));
  TM_RETURN_IF_ERROR(ParseHostPort(options.bootstrap).status());
  // Checked before listening, so that no worker joins a leader that cannot start.
  if (options.backend == "cuda") {
#ifdef TOKENMILL_HAVE_CUDA
    if (CudaDeviceCount() < 1) {
      return absl::InvalidArgumentError("backend 'cuda': rank 0 (this process) sees no GPU");
    }
#else
    return absl::InvalidArgumentError(
        "backend 'cuda' is not available in this build (TOKENMILL_CUDA=ON builds it)");
#endif
  } else if (options.backend != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", options.backend, "' is unknown (have: cpu, cuda)"));
  }
  auto exec = std::make_unique<DistributedExecutor>(model.config, options);
  TM_RETURN_IF_ERROR(exec->Init(model));
  spdlog::info("tensor parallelism: {}", exec->Describe());
  return exec;
}

}  // namespace tokenmill
