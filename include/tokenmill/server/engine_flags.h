// Engine and executor knobs shared by `generate`, `serve` and `bench`, as CLI flags.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "tokenmill/engine/engine.h"
#include "tokenmill/api/model_bundle.h"

namespace tokenmill {

struct EngineFlags {
  std::string backend = "cpu";
  int threads = 0;
  int tensor_parallel = 1;
  int max_num_seqs = 256;
  int max_batched_tokens = 2048;
  int max_model_len = 0;        // 0: the model's max_position_embeddings
  int kv_cache_blocks = 0;      // 0: from kv_cache_mb
  int64_t kv_cache_mb = 1024;
  int block_size = 16;
  bool no_prefix_caching = false;
  int max_pending_requests = 0;
  // Testing only (--inject-faults): engine/fault_injection.h. Never read from a config file.
  std::string inject_faults;
  // --bootstrap HOST:PORT (or TOKENMILL_BOOTSTRAP): ranks 1..N-1 are `tokenmill worker`
  // processes that join this one there (docs/parallel.md). A flag, not a config field.
  std::string bootstrap;
  // Set by the command, not a flag: called if the engine can never run again (a worker of
  // the tensor-parallel group is gone: ExecutorOptions::on_fatal; or the engine failed:
  // Engine::AddFailureObserver). Both may happen: it must act once.
  std::function<void(const absl::Status&)> on_fatal;
};

void AddEngineFlags(CLI::App* app, EngineFlags* flags);

// Builds the executor and engine for `bundle` (which must outlive the engine). The meters,
// metrics and ledger in `accounting` must outlive it too.
absl::StatusOr<std::unique_ptr<Engine>> BuildEngine(const ModelBundle& bundle,
                                                    const EngineFlags& flags,
                                                    const EngineAccounting& accounting = {});

}  // namespace tokenmill
