// Knobs of the continuous-batching policy (docs/scheduling.md explains each one).
#pragma once

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"

namespace tokenmill {

struct SchedulerConfig {
  // Tokens computed per step, all sequences together (decodes count 1 each). Bounds step
  // latency; must be >= max_num_seqs so every running decode fits in one step.
  int max_num_batched_tokens = 2048;
  // Sequences in the running set (a request with n > 1 takes n slots from admission on).
  int max_num_seqs = 256;
  // Longest sequence (prompt + output) the model accepts. The scheduler further caps it at
  // the KV pool's capacity, so one sequence alone always fits.
  int max_model_len = 4096;
  // Split prompts longer than the step's remaining budget across steps. Off: a prompt is
  // admitted only when it fits whole (then max_num_batched_tokens >= max_model_len).
  bool enable_chunked_prefill = true;
  // Most prefill tokens one sequence computes in one step; 0: only the step budget limits.
  // Lower values interleave several long prompts instead of serving them one at a time.
  int max_prefill_chunk_tokens = 0;
  // Fraction of KV blocks kept available when admitting new work, so running sequences can
  // grow without immediate preemption. Ignored while nothing runs.
  double kv_watermark = 0.01;
  // Deficit round robin between tenants of one priority: tokens of credit per round per
  // unit of weight. A request's cost is its prompt length.
  int fair_share_quantum_tokens = 512;
  // Anti-starvation: a waiting request counts as one priority level more urgent per this
  // many seconds of waiting. 0: strict priority (a busy urgent class can starve others).
  double priority_aging_s = 30.0;
  // Fair-share weight per tenant name; tenants not listed get default_tenant_weight.
  absl::flat_hash_map<std::string, double> tenant_weights;
  double default_tenant_weight = 1.0;

  // InvalidArgument naming the field ("scheduler.<field>") when a value is out of range.
  absl::Status Validate() const;
};

}  // namespace tokenmill
