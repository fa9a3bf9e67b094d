#include "engine/tensor_parallel_executor.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "engine/distributed_executor.h"
#include "engine/distributed_rank.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"
#include "tokenmill/kv/kv_cache_config.h"
#include "tokenmill/model/sharding.h"
#include "tokenmill/parallel/loopback.h"
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

// Runs one function per rank: rank 0 on the calling thread, the others on threads owned
// here, so a step costs one wake-up per extra rank and no thread creation.
class RankThreads {
 public:
  using Job = std::function<absl::Status(int rank)>;

  // `on_exception` runs (on the rank's thread) when a job throws: the rank has left its
  // step half done, so the caller must release the ranks waiting for it.
  RankThreads(int num_ranks, std::function<void(const absl::Status&)> on_exception)
      : num_ranks_(num_ranks), on_exception_(std::move(on_exception)), results_(num_ranks) {
    for (int r = 1; r < num_ranks; ++r) threads_.emplace_back([this, r] { Loop(r); });
  }

  ~RankThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  // Runs job(r) for every rank; returns when all have finished, with their statuses.
  std::vector<absl::Status> Run(const Job& job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      pending_ = num_ranks_ - 1;
      ++generation_;
    }
    start_.notify_all();
    const absl::Status mine = Guarded(job, 0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_ == 0; });
    results_[0] = mine;
    job_ = nullptr;
    return results_;
  }

 private:
  void Loop(int rank) {
    int64_t seen = 0;
    for (;;) {
      const Job* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        start_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || generation_ != seen;
        });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      const absl::Status s = Guarded(*job, rank);
      std::lock_guard<std::mutex> lock(mu_);
      results_[rank] = s;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  // Thread entry points turn stray exceptions into INTERNAL (STYLE.md section 3).
  absl::Status Guarded(const Job& job, int rank) {
    try {
      return job(rank);
    } catch (const std::exception& e) {
      const absl::Status s =
          absl::InternalError(absl::StrCat("rank ", rank, ": exception: ", e.what()));
      on_exception_(s);
      return s;
    } catch (...) {
      const absl::Status s = absl::InternalError(absl::StrCat("rank ", rank, ": exception"));
      on_exception_(s);
      return s;
    }
  }

  const int num_ranks_;
  std::function<void(const absl::Status&)> on_exception_;
  std::mutex mu_;  // not absl::Mutex: see parallel/loopback.cc (ThreadSanitizer)
  std::condition_variable start_, done_;
  const Job* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<absl::Status> results_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// The first failure, by rank, or OK.
absl::Status FirstError(const std::vector<absl::Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) {
    if (!statuses[r].ok()) {
      return absl::Status(statuses[r].code(),
                          absl::StrCat("rank ", r, ": ", std::string(statuses[r].message())));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBackend(const ExecutorOptions& options) {
  if (options.backend == "cpu") return absl::OkStatus();
  if (options.backend == "cuda") {
#ifdef TOKENMILL_HAVE_CUDA
    const int n = options.tensor_parallel;
    const int gpus = CudaDeviceCount();
    if (gpus < n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tensor-parallel ", n, " needs ", n, " GPUs (one per rank); this machine has ", gpus));
    }
    return absl::OkStatus();
#else
    return absl::InvalidArgumentError(
        "backend 'cuda' is not available in this build (TOKENMILL_CUDA=ON builds it)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("backend '", options.backend, "' is unknown (have: cpu, cuda)"));
}

// One rank's shard, backend, model.
struct Rank {
  Communicator* comm = nullptr;  // owned by the executor (loopback group or NCCL)
  std::unique_ptr<LoadedModel> shard;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::vector<float> logits;  // ranks > 0: the gathered logits nobody reads
};

class TensorParallelExecutor final : public ModelExecutor {
 public:
  TensorParallelExecutor(const ModelConfig& config, const ExecutorOptions& options,
                         int threads_per_rank)
      : config_(config), options_(options), threads_per_rank_(threads_per_rank) {}

  ~TensorParallelExecutor() override {
    // Models first, then their communicators (NCCL ranks finalize together, each on its
    // thread), then (with ranks_) the backends whose streams NCCL used.
    if (threads_ != nullptr) {
      threads_->Run([&](int r) {
        ranks_[r].model.reset();
        if (!nccl_.empty()) nccl_[r].reset();
        return absl::OkStatus();
      });
    }
    threads_.reset();  // ranks are idle between steps
  }

  absl::Status Init(const LoadedModel& model) {
    const int n = options_.tensor_parallel;
    TM_ASSIGN_OR_RETURN(group_,
                        LoopbackGroup::Create({.world_size = n, .timeout = kCollectiveTimeout}));
    threads_ =
        std::make_unique<RankThreads>(n, [this](const absl::Status& s) { group_->Abort(s); });
    ranks_.resize(n);
    // In phases, so that no rank waits in NCCL's set-up for a rank whose GPU failed.
    TM_RETURN_IF_ERROR(FirstError(threads_->Run([&](int r) -> absl::Status {
      // Rank r runs on GPU r (cuda).
      TM_ASSIGN_OR_RETURN(ranks_[r].backend,
                          MakeRankBackend(options_.backend, r, threads_per_rank_));
      return absl::OkStatus();
    })));
    TM_RETURN_IF_ERROR(MakeCommunicators());
    // Each rank shards and uploads its own weights, in parallel.
    TM_RETURN_IF_ERROR(FirstError(threads_->Run([&](int r) { return InitRank(model, r); })));
    int num_blocks = options_.num_kv_blocks;
    if (num_blocks <= 0) {
      const KvCacheSpec one = ranks_[0].model->KvSpec(1, options_.block_size);
      TM_ASSIGN_OR_RETURN(num_blocks, NumBlocksForBudget(options_.kv_cache_bytes,
                                                         static_cast<int64_t>(one.BytesPerToken()),
                                                         options_.block_size));
    }
    spec_ = ranks_[0].model->KvSpec(num_blocks, options_.block_size);
    return FirstError(
        threads_->Run([&](int r) { return ranks_[r].backend->AllocateKvCache(spec_); }));
  }

  const ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return spec_.num_blocks; }
  int block_size() const override { return spec_.block_size; }
  int max_num_tokens() const override { return options_.max_num_tokens; }
  int max_num_logits() const override { return options_.max_num_logits; }

  absl::Status Execute(const BatchPlan& plan, std::span<const BlockCopy> copies,
                       std::vector<float>* logits) override {
    if (!broken_.ok()) return broken_;
    copy_pairs_.clear();
    for (const BlockCopy& c : copies) copy_pairs_.emplace_back(c.src, c.dst);
    const absl::Status step = FirstError(threads_->Run([&](int r) {
      Rank& rank = ranks_[r];
      if (!copy_pairs_.empty()) rank.backend->CopyKvBlocks(copy_pairs_);
      return rank.model->Forward(plan, r == 0 ? logits : &rank.logits);
    }));
    for (const Rank& rank : ranks_) {
      if (const absl::Status group = rank.comm->status(); !group.ok()) {
        broken_ = absl::UnavailableError(absl::StrCat("tensor-parallel ranks are out of step (",
                                                      std::string(group.message()),
                                                      "); restart the engine"));
        spdlog::error("{}", std::string(broken_.message()));
        break;
      }
    }
    return step;
  }

  std::string Describe() const override {
    const bool is_cpu = options_.backend == "cpu";
    return absl::StrCat(
        std::string(ranks_[0].backend->Name()), " x", options_.tensor_parallel,
        is_cpu       ? absl::StrCat(" loopback ranks (", threads_per_rank_, " thread(s) each)")
        : uses_nccl_ ? std::string(" (one GPU per rank, NCCL collectives on each backend's stream)")
                     : std::string(" (one GPU per rank, collectives staged through host memory)"),
        ", ", spec_.num_blocks, " KV blocks of ", spec_.block_size, " tokens per rank");
  }

 private:
  absl::Status InitRank(const LoadedModel& model, int r) {
    Rank& rank = ranks_[r];
    TM_ASSIGN_OR_RETURN(rank.shard, ShardModel(model, r, options_.tensor_parallel));
    LlamaModelOptions mo;
    mo.max_num_tokens = options_.max_num_tokens;
    mo.max_num_logits = options_.max_num_logits;
    mo.communicator = rank.comm;
    TM_ASSIGN_OR_RETURN(rank.model, LlamaModel::Create(*rank.shard, rank.backend.get(), mo));
    return absl::OkStatus();
  }

  // Each rank's communicator: NCCL on its backend's stream (cuda, in builds with NCCL),
  // otherwise the loopback group's rank.
  absl::Status MakeCommunicators() {
#ifdef TOKENMILL_HAVE_NCCL
    if (options_.backend == "cuda") {
      // In one process the unique id needs no bootstrap.
      TM_ASSIGN_OR_RETURN(const std::string id, NcclGetUniqueId());
      nccl_.resize(ranks_.size());
      TM_RETURN_IF_ERROR(FirstError(threads_->Run([&](int r) -> absl::Status {
        NcclOptions o;
        o.rank = r;
        o.world_size = options_.tensor_parallel;
        o.device = r;
        o.unique_id = id;
        o.stream = ranks_[r].backend->device_stream();
        // Enqueue only: the backend orders the collectives with its ops (and records them
        // into its CUDA graphs) and waits for them through Synchronize().
        o.synchronous = false;
        o.timeout = kCollectiveTimeout;
        TM_ASSIGN_OR_RETURN(nccl_[r], MakeNcclCommunicator(o));
        ranks_[r].comm = nccl_[r].get();
        return absl::OkStatus();
      })));
      uses_nccl_ = true;
      return absl::OkStatus();
    }
#endif
    if (options_.backend == "cuda") {
      spdlog::warn(
          "tensor parallelism on cuda without NCCL (this build did not find it): collectives "
          "are staged through host memory");
    }
    for (size_t r = 0; r < ranks_.size(); ++r) ranks_[r].comm = group_->rank(static_cast<int>(r));
    return absl::OkStatus();
  }

  ModelConfig config_;
  ExecutorOptions options_;
  int threads_per_rank_;
  bool uses_nccl_ = false;
  std::unique_ptr<LoopbackGroup> group_;
  std::vector<std::unique_ptr<Communicator>> nccl_;  // outlive the models (declared first)
  std::vector<Rank> ranks_;
  std::unique_ptr<RankThreads> threads_;  // declared last: stopped first
  KvCacheSpec spec_;
  std::vector<std::pair<int32_t, int32_t>> copy_pairs_;
  absl::Status broken_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeTensorParallelExecutor(
    const LoadedModel& model, const ExecutorOptions& options) {
  const int n = options.tensor_parallel;
  TM_CHECK(n > 1, "tensor_parallel ", n);
  if (!options.bootstrap.empty()) return MakeDistributedExecutor(model, options);
  TM_RETURN_IF_ERROR(CheckShardable(model, n));
  TM_RETURN_IF_ERROR(CheckBackend(options));
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads_per_rank = options.num_threads > 0 ? options.num_threads : std::max(1, hw / n);
  auto exec = std::make_unique<TensorParallelExecutor>(model.config, options, threads_per_rank);
  TM_RETURN_IF_ERROR(exec->Init(model));
  spdlog::info("tensor parallelism: {}", exec->Describe());
  return exec;
}

}  // namespace tokenmill
