#include "tokenmill/engine/model_executor.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tensor_parallel_executor.h"
#include "spdlog/spdlog.h"
#include "tokenmill/backend/cpu_backend.h"
#ifdef TOKENMILL_HAVE_CUDA
#include "tokenmill/backend/cuda_backend.h"
#endif
#include "tokenmill/core/status.h"
#include "tokenmill/engine/fault_injection.h"
#include "tokenmill/kv/kv_cache_config.h"

namespace tokenmill {
namespace {

// One rank: one backend, one LlamaModel, one KV cache.
class SingleRankExecutor final : public ModelExecutor {
 public:
  SingleRankExecutor(const ModelConfig& config, std::unique_ptr<Backend> backend,
                     const ExecutorOptions& options)
      : config_(config), backend_(std::move(backend)), options_(options) {}

  absl::Status Init(const LoadedModel& model) {
    LlamaModelOptions mo;
    mo.max_num_tokens = options_.max_num_tokens;
    mo.max_num_logits = options_.max_num_logits;
    TM_ASSIGN_OR_RETURN(model_, LlamaModel::Create(model, backend_.get(), mo));
    int num_blocks = options_.num_kv_blocks;
    if (num_blocks <= 0) {
      const KvCacheSpec one = model_->KvSpec(1, options_.block_size);
      TM_ASSIGN_OR_RETURN(num_blocks,
                          NumBlocksForBudget(options_.kv_cache_bytes,
                                             static_cast<int64_t>(one.BytesPerToken()),
                                             options_.block_size));
    }
    spec_ = model_->KvSpec(num_blocks, options_.block_size);
    return backend_->AllocateKvCache(spec_);
  }

  const ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return spec_.num_blocks; }
  int block_size() const override { return spec_.block_size; }
  int max_num_tokens() const override { return options_.max_num_tokens; }
  int max_num_logits() const override { return options_.max_num_logits; }

  absl::Status Execute(const BatchPlan& plan, std::span<const BlockCopy> copies,
                       std::vector<float>* logits) override {
    if (!copies.empty()) {
      copy_pairs_.clear();
      for (const BlockCopy& c : copies) copy_pairs_.emplace_back(c.src, c.dst);
      backend_->CopyKvBlocks(copy_pairs_);
    }
    return model_->Forward(plan, logits);
  }

  std::string Describe() const override {
    return absl::StrCat(std::string(backend_->Name()), " x1, ", spec_.num_blocks,
                        " KV blocks of ", spec_.block_size, " tokens");
  }

 private:
  ModelConfig config_;
  std::unique_ptr<Backend> backend_;
  ExecutorOptions options_;
  std::unique_ptr<LlamaModel> model_;
  KvCacheSpec spec_;
  std::vector<std::pair<int32_t, int32_t>> copy_pairs_;
};

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const ExecutorOptions& options) {
  if (options.backend == "cpu") {
    CpuBackendOptions cpu;
    cpu.num_threads = options.num_threads;
    return MakeCpuBackend(cpu);
  }
#ifdef TOKENMILL_HAVE_CUDA
  if (options.backend == "cuda") {
    if (CudaDeviceCount() < 1) {
      return absl::UnavailableError("backend 'cuda': no CUDA device is visible on this machine");
    }
    return MakeCudaBackend(CudaBackendOptions{});
  }
  return absl::InvalidArgumentError(
      absl::StrCat("backend '", options.backend, "' is unknown (have: cpu, cuda)"));
#else
  return absl::InvalidArgumentError(absl::StrCat(
      "backend '", options.backend, "' is not available in this build (have: cpu; cuda needs "
      "a build with TOKENMILL_CUDA=ON)"));
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeModelExecutor(const LoadedModel& model,
                                                                  const ExecutorOptions& options) {
  if (options.block_size < 1) return absl::InvalidArgumentError("block_size must be >= 1");
  if (options.tensor_parallel < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel must be >= 1 (got ", options.tensor_parallel, ")"));
  }
  std::optional<FaultSpec> faults;
  if (!options.inject_faults.empty()) {
    auto parsed = ParseFaultSpec(options.inject_faults);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("inject_faults: ", std::string(parsed.status().message())));
    }
    faults = *std::move(parsed);
  }
  std::unique_ptr<ModelExecutor> exec;
  if (options.tensor_parallel > 1) {
    TM_ASSIGN_OR_RETURN(exec, MakeTensorParallelExecutor(model, options));
  } else {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, MakeBackend(options));
    auto single = std::make_unique<SingleRankExecutor>(model.config, std::move(backend), options);
    TM_RETURN_IF_ERROR(single->Init(model));
    exec = std::move(single);
  }
  // Testing only; off (the common case) nothing is wrapped and Execute() costs nothing extra.
  if (faults.has_value()) exec = MakeFaultInjectingExecutor(std::move(exec), *std::move(faults));
  return exec;
}

}  // namespace tokenmill
