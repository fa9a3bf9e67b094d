// FakeEngine: drives a Scheduler the way engine/ does, with a fake model, and checks every
// plan against a shadow KV cache. Each token's "KV" is its token id, written into the slot
// its block table names; before a sequence "attends" we check that every position of its
// context reads back its own token. That catches wrong prefix hits, missing or wrong
// copy-on-write copies, and tables that do not cover the context.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/scheduler/scheduler.h"

namespace tokenmill::scheduler_testing {

class FakeEngine {
 public:
  // Returns the token a sequence samples (sample_index-th sample of the row).
  using Sampler = std::function<int32_t(const Sequence& seq, int sample_index)>;

  FakeEngine(const SchedulerConfig& config, const KvCacheConfig& kv_config)
      : kv_(kv_config),
        scheduler_(config, &kv_, &clock_),
        slots_(static_cast<size_t>(kv_config.num_blocks) * kv_config.block_size, -1) {}

  Scheduler& scheduler() { return scheduler_; }
  KvCacheManager& kv() { return kv_; }
  FakeClock& clock() { return clock_; }
  void set_sampler(Sampler sampler) { sampler_ = std::move(sampler); }

  // Token events so far, per request, per sample.
  const std::map<RequestId, std::map<int, std::vector<int32_t>>>& outputs() const {
    return outputs_;
  }
  const std::map<RequestId, FinishReason>& finish_reasons() const { return reasons_; }
  int64_t num_prefill_tokens() const { return scheduler_.stats().num_prefill_tokens; }

  // Runs one step and returns the plan string. Verifies the plan and the invariants.
  // `in_flight` runs between Schedule() and OnStepDone(), as engine inbox work would.
  std::string Step(const std::function<void()>& in_flight = nullptr) {
    const StepPlan& plan = scheduler_.Schedule();
    const std::string text = plan.ToString();
    for (const SequenceRef& r : plan.aborted) {
      reasons_[r.request_id] = r.reason;
      abort_times_s_[r.request_id] = clock_.NowSeconds();
      SetReason(r.request_id, r.sample_index, r.reason);
    }
    for (const RequestId id : plan.finished_requests) Finished(id);
    if (!plan.has_work()) {
      CheckInvariants();
      return text;
    }
    std::vector<int32_t> sampled;
    RunPlan(plan, &sampled);
    if (::testing::Test::HasFatalFailure()) {
      scheduler_.DiscardStep();
      return text;
    }
    if (in_flight) in_flight();
    const StepOutcome& outcome = scheduler_.OnStepDone(sampled);
    EXPECT_EQ(outcome.updates.size(), sampled.size());
    for (const SequenceUpdate& u : outcome.updates) {
      outputs_[u.request_id][u.sample_index].push_back(u.token_id);
      if (u.finish_reason != FinishReason::kNone) {
        SetReason(u.request_id, u.sample_index, u.finish_reason);
      }
    }
    for (const RequestId id : outcome.finished_requests) Finished(id);
    CheckInvariants();
    return text;
  }

  // Steps until nothing is left (or `max_steps`), returning one plan string per step.
  std::vector<std::string> RunToCompletion(int max_steps = 10000) {
    std::vector<std::string> lines;
    while (scheduler_.has_unfinished_requests() && max_steps-- > 0) lines.push_back(Step());
    EXPECT_FALSE(scheduler_.has_unfinished_requests()) << "no progress";
    return lines;
  }

  // How sample `sample_index` of a request ended (kNone while it runs).
  FinishReason SampleReason(RequestId request_id, int sample_index) const {
    const auto it = sample_reasons_.find({request_id, sample_index});
    return it == sample_reasons_.end() ? FinishReason::kNone : it->second;
  }
  // Clock time of the plan that aborted the request.
  const std::map<RequestId, double>& abort_times_s() const { return abort_times_s_; }

  const std::vector<RequestId>& finished_order() const { return finished_order_; }

 private:
  void Finished(RequestId id) {
    EXPECT_EQ(std::count(finished_order_.begin(), finished_order_.end(), id), 0)
        << "request " << id << " finished twice";
    finished_order_.push_back(id);
  }

  void SetReason(RequestId request_id, int sample_index, FinishReason reason) {
    EXPECT_TRUE(sample_reasons_.emplace(std::make_pair(request_id, sample_index), reason).second)
        << "r" << request_id << "." << sample_index << " ended twice";
  }

  void CheckInvariants() {
    const absl::Status status = scheduler_.CheckInvariants();
    ASSERT_TRUE(status.ok()) << status;
  }

  int32_t& Slot(std::span<const BlockId> table, int pos) {
    const int bs = kv_.block_size();
    return slots_[static_cast<size_t>(table[pos / bs]) * bs + pos % bs];
  }

  void RunPlan(const StepPlan& plan, std::vector<int32_t>* sampled) {
    const SchedulerConfig& config = scheduler_.config();
    EXPECT_LE(plan.num_batched_tokens, config.max_num_batched_tokens);
    EXPECT_LE(static_cast<int>(plan.sequences.size()), config.max_num_seqs);
    const int bs = kv_.block_size();
    // Copy-on-write copies happen before any KV write of the step, as one batch.
    std::set<BlockId> sources;
    for (const BlockCopy& c : plan.block_copies) sources.insert(c.src);
    for (const BlockCopy& c : plan.block_copies) {
      EXPECT_FALSE(sources.contains(c.dst)) << "copy destination is also a source";
    }
    for (const BlockCopy& c : plan.block_copies) {
      std::copy_n(slots_.begin() + c.src * bs, bs, slots_.begin() + c.dst * bs);
    }
    std::set<SeqId> seen;
    for (const ScheduledSequence& s : plan.sequences) {
      EXPECT_TRUE(seen.insert(s.seq_id).second) << "sequence twice in one plan";
      const Sequence* seq = scheduler_.FindSequence(s.seq_id);
      ASSERT_NE(seq, nullptr);
      EXPECT_GE(static_cast<int>(s.block_table.size()), (s.context_len() + bs - 1) / bs);
      EXPECT_LE(s.context_len(), seq->num_tokens());
      EXPECT_EQ(s.num_samples > 0, s.context_len() == seq->num_tokens());
      for (int i = 0; i < s.num_new_tokens; ++i) {
        EXPECT_EQ(s.new_token_ids[i], seq->token_ids[s.start_position + i]);
        Slot(s.block_table, s.start_position + i) = s.new_token_ids[i];
      }
    }
    // Attention: every sequence reads its whole context from the cache.
    for (const ScheduledSequence& s : plan.sequences) {
      const Sequence* seq = scheduler_.FindSequence(s.seq_id);
      for (int pos = 0; pos < s.context_len(); ++pos) {
        ASSERT_EQ(Slot(s.block_table, pos), seq->token_ids[pos])
            << "r" << s.request_id << "." << s.sample_index << " reads foreign KV at " << pos
            << " in plan " << plan.ToString();
      }
      for (int i = 0; i < s.num_samples; ++i) sampled->push_back(sampler_(*seq, i));
    }
  }

  FakeClock clock_;
  KvCacheManager kv_;
  Scheduler scheduler_;
  std::vector<int32_t> slots_;
  Sampler sampler_ = [](const Sequence&, int) { return 7; };
  std::map<RequestId, std::map<int, std::vector<int32_t>>> outputs_;
  std::map<RequestId, FinishReason> reasons_;
  std::map<std::pair<RequestId, int>, FinishReason> sample_reasons_;
  std::map<RequestId, double> abort_times_s_;
  std::vector<RequestId> finished_order_;
};

}  // namespace tokenmill::scheduler_testing
