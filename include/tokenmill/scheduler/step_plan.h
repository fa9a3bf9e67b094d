// StepPlan: what one step computes, as plain data for the engine.
//
// The engine turns it into the backend's BatchPlan (backend/backend.h) like this, for each
// ScheduledSequence s in order:
//   BatchSequence{query_start = running row count, num_query_tokens = s.num_new_tokens,
//                 context_len = s.context_len(), block_table = s.block_table}
//   token_ids += s.new_token_ids; positions += [s.start_position, s.context_len())
//   if s.num_samples > 0: logits_rows += the sequence's last row
// Before the step's KV writes it performs every `block_copies` entry (copy-on-write of a
// partial block shared by forked sequences). Then it samples s.num_samples tokens from each
// logits row and hands them, flattened in plan order, to Scheduler::OnStepDone().
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/scheduler/sequence.h"

namespace tokenmill {

struct ScheduledSequence {
  SeqId seq_id = 0;
  RequestId request_id = 0;
  int sample_index = 0;
  int32_t start_position = 0;  // first new token's position == tokens already computed
  int32_t num_new_tokens = 0;  // prefill chunk length, or 1 for a decode
  // Tokens to sample from this sequence's last row: 0 (a prefill chunk that does not end
  // the sequence's known tokens: no logits), 1, or n for the leader of an n-sample request
  // whose prompt prefill completes (samples 0..n-1, in order).
  int num_samples = 0;
  bool is_decode = false;                  // one new token after generated ones
  std::span<const int32_t> new_token_ids;  // the tokens at [start, start + num_new)
  std::span<const BlockId> block_table;    // covers context_len() tokens

  int32_t context_len() const { return start_position + num_new_tokens; }
  bool needs_logits() const { return num_samples > 0; }
};

// A sequence named in a plan without being computed (preempted, aborted).
struct SequenceRef {
  SeqId seq_id = 0;
  RequestId request_id = 0;
  int sample_index = 0;
  FinishReason reason = FinishReason::kNone;  // aborts only
};

// Valid until the next non-const call on the Scheduler (the spans point into it).
struct StepPlan {
  // Running decodes first, then continued prefill chunks, then new admissions.
  std::vector<ScheduledSequence> sequences;
  std::vector<BlockCopy> block_copies;       // to perform before this step's KV writes
  std::vector<SequenceRef> preempted;        // blocks freed; they will recompute later
  std::vector<SequenceRef> aborted;          // cancelled / deadline / error; blocks freed
  std::vector<RequestId> finished_requests;  // requests whose last sequence was aborted here
  int num_batched_tokens = 0;                // sum of num_new_tokens

  bool has_work() const { return !sequences.empty(); }
  void Clear();

  // One line for tests (STYLE.md section 6), sections joined by " | ", empty ones left out:
  //   "P r1[0,512) r4.1[32,48)x3 | D r2 r3 | preempt r5 | abort r6:deadline | copy 3>7"
  // Prefill chunks as [start,end), "xN" when N samples are drawn; decodes by name only.
  // A sequence is "r<request_id>", with ".<sample_index>" for samples other than 0.
  // "idle" when nothing at all happens.
  std::string ToString() const;
};

}  // namespace tokenmill
