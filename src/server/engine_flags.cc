#include "tokenmill/server/engine_flags.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"
#include "tokenmill/engine/fault_injection.h"

namespace tokenmill {

void AddEngineFlags(CLI::App* app, EngineFlags* f) {
  app->add_option("--backend", f->backend, "Compute backend: cpu or cuda")
      ->capture_default_str();
  app->add_option("--threads", f->threads,
                  "CPU backend threads per rank (0: all cores, shared among the ranks)")
      ->capture_default_str();
  app->add_option("--tensor-parallel,--tp", f->tensor_parallel,
                  "Tensor-parallel ranks (cpu: loopback threads; cuda: one GPU per rank)")
      ->capture_default_str();
  app->add_option("--max-num-seqs", f->max_num_seqs, "Most sequences running at once")
      ->capture_default_str();
  app->add_option("--max-batched-tokens", f->max_batched_tokens,
                  "Most tokens computed in one step (chunked-prefill budget)")
      ->capture_default_str();
  app->add_option("--max-model-len", f->max_model_len,
                  "Longest sequence (prompt + output); 0: the model's context length")
      ->capture_default_str();
  app->add_option("--kv-cache-blocks", f->kv_cache_blocks,
                  "KV-cache blocks (overrides --kv-cache-mb)")
      ->capture_default_str();
  app->add_option("--kv-cache-mb", f->kv_cache_mb, "KV-cache memory budget per rank, MiB")
      ->capture_default_str();
  app->add_option("--block-size", f->block_size, "Tokens per KV block")->capture_default_str();
  app->add_flag("--no-prefix-caching", f->no_prefix_caching, "Disable automatic prefix caching");
  app->add_option("--max-pending-requests", f->max_pending_requests,
                  "Bound on unfinished requests; beyond it requests are refused (0: none)")
      ->capture_default_str();
  app->add_option("--bootstrap", f->bootstrap,
                  "HOST:PORT where this process (rank 0) waits for the other tensor-parallel "
                  "ranks, run as `tokenmill worker` processes (docs/parallel.md)")
      ->envname("TOKENMILL_BOOTSTRAP");
  app->add_option("--inject-faults", f->inject_faults,
                  "TESTING ONLY: fail or delay engine steps on purpose, e.g. "
                  "'step_error:at=3;step_delay_ms=10' (docs/operations.md)");
}

absl::StatusOr<std::unique_ptr<Engine>> BuildEngine(const ModelBundle& bundle,
                                                    const EngineFlags& f,
                                                    const EngineAccounting& accounting) {
  if (f.max_num_seqs < 1) return absl::InvalidArgumentError("--max-num-seqs must be >= 1");
  if (f.max_batched_tokens < 1) {
    return absl::InvalidArgumentError("--max-batched-tokens must be >= 1");
  }
  if (f.kv_cache_mb < 1 && f.kv_cache_blocks < 1) {
    return absl::InvalidArgumentError("--kv-cache-mb must be >= 1");
  }
  if (!f.inject_faults.empty()) {
    auto faults = ParseFaultSpec(f.inject_faults);
    if (!faults.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--inject-faults: ", std::string(faults.status().message())));
    }
    // Loud on purpose: a daemon that fails requests by design must never pass unnoticed.
    spdlog::warn(
        "FAULT INJECTION ON (--inject-faults '{}'): engine steps will fail or slow down on "
        "purpose. Testing only; never use this in production.",
        faults->ToString());
  }
  if (!f.bootstrap.empty() && f.tensor_parallel < 2) {
    return absl::InvalidArgumentError(
        "--bootstrap gathers the ranks of a tensor-parallel group: it needs --tensor-parallel "
        ">= 2 (this process is rank 0, `tokenmill worker` processes the others)");
  }
  ExecutorOptions eo;
  eo.backend = f.backend;
  eo.num_threads = f.threads;
  eo.tensor_parallel = f.tensor_parallel;
  eo.block_size = f.block_size;
  eo.num_kv_blocks = f.kv_cache_blocks;
  eo.kv_cache_bytes = f.kv_cache_mb * (int64_t{1} << 20);
  eo.max_num_tokens = std::max(f.max_batched_tokens, f.max_num_seqs);
  eo.max_num_logits = f.max_num_seqs;
  eo.inject_faults = f.inject_faults;
  eo.bootstrap = f.bootstrap;
  eo.on_fatal = f.on_fatal;
  TM_ASSIGN_OR_RETURN(std::unique_ptr<ModelExecutor> exec,
                      MakeModelExecutor(*bundle.model, eo));
  EngineOptions opts;
  opts.scheduler.max_num_seqs = f.max_num_seqs;
  opts.scheduler.max_num_batched_tokens = std::max(f.max_batched_tokens, f.max_num_seqs);
  opts.scheduler.max_model_len = f.max_model_len > 0
                                     ? f.max_model_len
                                     : bundle.model->config.max_position_embeddings;
  opts.enable_prefix_caching = !f.no_prefix_caching;
  opts.max_pending_requests = f.max_pending_requests;
  opts.accounting = accounting;
  TM_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(opts, std::move(exec)));
  if (f.on_fatal) engine->AddFailureObserver(f.on_fatal);
  return engine;
}

}  // namespace tokenmill
