// Requests and sequences as the scheduler sees them: token ids, lengths, stop rules and
// lifecycle state. No tensors, no text.
//
// A *request* (RequestSpec) is what the user sent; it owns one *sequence* per sample
// (n > 1: parallel sampling). Sample 0 (the leader) prefills the prompt; the others are
// forked from it when the prefill finishes and share its prompt blocks.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tokenmill/kv/kv_cache_manager.h"

namespace tokenmill {

using RequestId = int64_t;

// Why a sequence ended. The first three are normal endings detected in OnStepDone; the
// rest are aborts (AbortRequest, deadline).
enum class FinishReason {
  kNone,           // still going
  kStop,           // sampled a stop token id (EOS included by the engine)
  kLength,         // generated max_tokens
  kContextLength,  // reached the longest sequence the model / KV pool allows
  kCancelled,      // the client went away or cancelled
  kDeadline,       // the request's deadline passed
  kError,          // the engine failed the step or the request
};

// "stop", "length", "context_length", "cancelled", "deadline", "error", "" for kNone.
const char* FinishReasonName(FinishReason reason);
inline bool IsAbort(FinishReason reason) { return reason >= FinishReason::kCancelled; }

enum class SequenceStatus {
  kWaiting,    // queued for admission (a follower waits for its leader's prefill)
  kRunning,    // holds KV blocks and is scheduled every step
  kPreempted,  // blocks taken back; waits at the front of the queue to recompute
  kFinished,
  kAborted,
};

// What the engine submits. Token ids only; the engine tokenizes and adds EOS ids to
// stop_token_ids unless the user asked to ignore EOS.
struct RequestSpec {
  RequestId request_id = 0;
  std::vector<int32_t> prompt_token_ids;  // non-empty
  int n = 1;                              // parallel samples, 1..max_num_seqs
  int max_tokens = 16;                    // generated tokens per sample, >= 1
  int min_tokens = 0;                     // stop ids end a sample only after this many
  std::vector<int32_t> stop_token_ids;
  int priority = 0;                  // lower is more urgent (vLLM convention)
  std::string tenant;                // fair-share account ("" is a tenant too)
  std::optional<double> deadline_s;  // absolute, on the scheduler's Clock
  uint64_t cache_salt = 0;           // prefix-cache extra key (LoRA id, tenant salt)
};

// One decoding stream. Owned by the Scheduler; others see it as const and only between
// its calls. Fields below "bookkeeping" are the scheduler's own.
struct Sequence {
  SeqId id = 0;
  RequestId request_id = 0;
  int sample_index = 0;
  const RequestSpec* spec = nullptr;  // the request's, shared by its samples
  std::vector<int32_t> token_ids;     // prompt, then generated tokens
  int num_prompt_tokens = 0;
  int num_computed_tokens = 0;  // tokens whose KV is written (0 after preemption)
  SequenceStatus status = SequenceStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  uint64_t arrival_order = 0;        // FCFS rank among all requests
  double arrival_s = 0;              // Clock time of AddRequest
  int num_cached_prompt_tokens = 0;  // prefix-cache hit at first admission
  int num_preemptions = 0;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  std::span<const int32_t> output_token_ids() const {
    return std::span<const int32_t>(token_ids).subspan(num_prompt_tokens);
  }
  int priority() const { return spec->priority; }
  const std::string& tenant() const { return spec->tenant; }

  // --- bookkeeping (Scheduler only) ---
  int running_index = -1;  // slot in the running list, -1 when not running
  int step_index = -1;     // entry in the current step, -1 when not scheduled
  bool was_admitted = false;
  bool is_parked = false;               // a sample waiting to be forked from its leader
  std::vector<Sequence*> parked_forks;  // leader only: samples to fork after the prompt
};

}  // namespace tokenmill
