// ModelExecutor: the engine's seam to "run this step on the model", whatever the number
// of ranks or the backend. The engine plans (scheduler), the executor runs, the engine
// samples from the logits it returns.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/model/llama_model.h"

namespace tokenmill {

class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;
  // The full (unsharded) model's configuration.
  virtual const ModelConfig& config() const = 0;
  // KV blocks each rank holds (all ranks hold the same number).
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  // Most tokens / logits rows one step may carry.
  virtual int max_num_tokens() const = 0;
  virtual int max_num_logits() const = 0;
  // Performs `copies` (copy-on-write of shared partial blocks), then the step. On success
  // `logits` holds plan.logits_rows.size() rows of vocab_size floats.
  virtual absl::Status Execute(const BatchPlan& plan, std::span<const BlockCopy> copies,
                               std::vector<float>* logits) = 0;
  // Short description for logs: "cpu x1", "cpu loopback tp=2", "cuda:0".
  virtual std::string Describe() const = 0;
};

struct ExecutorOptions {
  std::string backend = "cpu";  // "cpu" or "cuda"
  int num_threads = 0;          // CPU backend threads per rank (0: all hardware threads)
  int tensor_parallel = 1;      // ranks
  int block_size = 16;
  // KV capacity: an explicit block count wins; otherwise kv_cache_bytes (per rank) is
  // divided by the per-token bytes.
  int num_kv_blocks = 0;
  int64_t kv_cache_bytes = int64_t{1} << 30;
  int max_num_tokens = 2048;
  int max_num_logits = 256;
  // Testing only: a fault-injection SPEC (engine/fault_injection.h) that fails or delays
  // chosen steps. "": off, nothing is wrapped.
  std::string inject_faults;
  // Tensor parallelism over processes (docs/parallel.md): "host:port" where this process,
  // rank 0, waits for ranks 1..tensor_parallel-1 (`tokenmill worker`). Empty: all ranks
  // in this process.
  std::string bootstrap;
  // Called once, from any thread, when the executor can never run a step again (a rank
  // of a multi-process group is gone). Must be quick; e.g. the daemon starts shutting down.
  std::function<void(const absl::Status&)> on_fatal;
};

// Builds the executor for `model` (which must outlive it): backend(s), weights, KV cache.
absl::StatusOr<std::unique_ptr<ModelExecutor>> MakeModelExecutor(const LoadedModel& model,
                                                                  const ExecutorOptions& options);

}  // namespace tokenmill
