// Scheduler: read-only views and the invariant check.
#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"
#include "tokenmill/scheduler/scheduler.h"

namespace tokenmill {

const Sequence* Scheduler::FindSequence(SeqId seq_id) const {
  const auto it = seq_index_.find(seq_id);
  return it == seq_index_.end() ? nullptr : it->second;
}

std::vector<SeqId> Scheduler::SequencesOf(RequestId request_id) const {
  std::vector<SeqId> ids;
  const auto it = requests_.find(request_id);
  if (it == requests_.end()) return ids;
  for (const auto& seq : it->second->seqs) ids.push_back(seq->id);
  return ids;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = stats_;
  s.num_waiting_sequences = waiting_.size();
  s.num_running_sequences = num_running_;
  return s;
}

absl::Status Scheduler::CheckInvariants() const {
  TM_RETURN_IF_ERROR(kv_->CheckInvariants());
  const auto fail = [](auto... parts) { return absl::InternalError(absl::StrCat(parts...)); };
  int num_running = 0;
  int num_slots = 0;
  int num_queued = 0;
  for (const auto& [request_id, request] : requests_) {
    int num_live = 0;
    for (const auto& owned : request->seqs) {
      const Sequence& seq = *owned;
      const bool has_blocks = kv_->Contains(seq.id);
      if (seq.num_tokens() > max_seq_len_ || seq.num_computed_tokens > seq.num_tokens()) {
        return fail("sequence ", seq.id, " has ", seq.num_tokens(), " tokens, ",
                    seq.num_computed_tokens, " computed, limit ", max_seq_len_);
      }
      switch (seq.status) {
        case SequenceStatus::kRunning:
          ++num_live;
          ++num_running;
          num_slots += SlotsOf(&seq);
          if (!has_blocks || kv_->num_computed_tokens(seq.id) != seq.num_computed_tokens) {
            return fail("running sequence ", seq.id, " disagrees with its KV table");
          }
          if (seq.running_index < 0 || seq.running_index >= static_cast<int>(running_.size()) ||
              running_[seq.running_index] != &seq) {
            return fail("running sequence ", seq.id, " is not in the running list");
          }
          break;
        case SequenceStatus::kWaiting:
        case SequenceStatus::kPreempted:
          ++num_live;
          if (!seq.is_parked) ++num_queued;
          if (has_blocks || seq.num_computed_tokens != 0) {
            return fail("waiting sequence ", seq.id, " holds KV");
          }
          break;
        case SequenceStatus::kFinished:
        case SequenceStatus::kAborted:
          if (has_blocks) return fail("ended sequence ", seq.id, " still holds blocks");
          break;
      }
    }
    if (num_live != request->num_live) {
      return fail("request ", request_id, " counts ", request->num_live, " live sequences, has ",
                  num_live);
    }
  }
  if (num_running != num_running_ || num_slots != num_running_slots_ ||
      num_queued != waiting_.size() || kv_->num_sequences() != num_running) {
    return fail("counts disagree: running ", num_running, "/", num_running_, ", slots ", num_slots,
                "/", num_running_slots_, ", queued ", num_queued, "/", waiting_.size(),
                ", KV tables ", kv_->num_sequences());
  }
  if (num_slots > config_.max_num_seqs) {
    return fail(num_slots, " running slots exceed max_num_seqs ", config_.max_num_seqs);
  }
  return absl::OkStatus();
}

}  // namespace tokenmill
