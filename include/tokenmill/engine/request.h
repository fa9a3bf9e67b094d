// What a client asks the engine for, and what comes back: the types shared by engine/
// and api/. Plain data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tokenmill/metrics/request_record.h"
#include "tokenmill/sampling/sampler.h"
#include "tokenmill/sampling/sampling_params.h"
#include "tokenmill/scheduler/sequence.h"  // FinishReason

namespace tokenmill {

struct EngineRequest {
  std::string id;                 // unique among live requests; the engine assigns one if empty
  std::string tenant = "default";
  std::string model;              // for accounting and ledgers
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  int n = 1;                      // parallel samples sharing the prompt's KV blocks
  int priority = 0;               // lower is more urgent (vLLM convention)
  std::optional<double> deadline_s;  // monotonic seconds (Clock::NowSeconds)
};

// Figures of one finished request (all its n sequences).
struct RequestUsage {
  int prompt_tokens = 0;
  int cached_tokens = 0;       // prompt tokens served from the prefix cache (first admission)
  int generated_tokens = 0;    // over all n sequences
  int prefill_tokens_computed = 0;  // includes recomputation after preemption
  int num_preemptions = 0;
  double queue_s = 0;          // arrival -> first scheduled
  double ttft_s = 0;           // arrival -> first token
  double tpot_s = 0;           // mean time per output token after the first
  double e2e_s = 0;            // arrival -> finish
  double device_seconds = 0;   // attributed step time (token share)
  std::optional<double> joules;  // attributed energy; absent when nothing measures it
  // Everything above plus energy, cost and identity, as the ledger and the API's
  // usage.tokenmill block report it.
  metrics::RequestRecord record;
};

// One event on a request's stream. A sequence's last event has finished == true; the
// request's last event overall also carries `usage`.
struct TokenEvent {
  int index = 0;                        // which of the request's n sequences
  std::vector<int32_t> token_ids;       // new tokens since the previous event
  std::vector<SampledToken> logprobs;   // parallel to token_ids when requested
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  absl::Status status;                  // non-OK for kError
  std::optional<RequestUsage> usage;    // on the request's final event
};

}  // namespace tokenmill
