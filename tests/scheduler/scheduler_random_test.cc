// Randomized end-to-end test of the scheduler with a fake model (random tokens) and a
// shadow KV cache (fake_engine.h): random arrivals, prompt lengths with shared prefixes,
// n, priorities, tenants, cancellations (also while a step is in flight), deadlines, and
// a KV pool small enough to force preemption. Every request must end, each sample with a
// reason its history justifies; the invariants hold after every step; no block is lost.
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fake_engine.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using scheduler_testing::FakeEngine;

constexpr int32_t kEos = 2;
constexpr int32_t kStopId = 3;

struct Totals {
  int64_t preemptions = 0;
  int64_t cached_prompt_tokens = 0;
  int64_t cow_copies = 0;
  int64_t evictions = 0;
  int num_stop = 0, num_length = 0, num_context = 0, num_cancelled = 0, num_deadline = 0;
};

class Simulation {
 public:
  explicit Simulation(uint32_t seed) : rng_(seed) {
    SchedulerConfig config;
    config.max_num_seqs = 2 + Rand(7);
    config.max_num_batched_tokens = config.max_num_seqs + 8 * (1 + Rand(8));
    config.max_model_len = 48 + Rand(48);
    config.max_prefill_chunk_tokens = Rand(3) == 0 ? 4 + Rand(12) : 0;
    config.kv_watermark = Rand(2) == 0 ? 0.0 : 0.05;
    config.priority_aging_s = Rand(2) == 0 ? 0.0 : 0.5 + Rand(3);
    config.fair_share_quantum_tokens = 8 + Rand(64);
    config.tenant_weights["a"] = 1 + Rand(3);
    const int block_size = 1 << Rand(5);  // 1..16
    // Room for one longest sequence and not much more: preemption is routine.
    const int num_blocks = (config.max_model_len + block_size - 1) / block_size + 1 + Rand(8);
    engine_ = std::make_unique<FakeEngine>(
        config, KvCacheConfig{.num_blocks = num_blocks, .block_size = block_size});
    for (int d = 0; d < 3; ++d) {
      std::vector<int32_t> doc(40);
      for (int32_t& t : doc) t = 10 + Rand(50);
      docs_.push_back(doc);
    }
    engine_->set_sampler([this](const Sequence&, int) {
      const int r = Rand(40);
      return r == 0 ? kEos : r == 1 ? kStopId : static_cast<int32_t>(10 + Rand(50));
    });
  }

  int Rand(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  void AddRequest() {
    Scheduler& s = engine_->scheduler();
    RequestSpec spec;
    spec.request_id = next_id_++;
    const int prompt_len = 1 + Rand(std::min(60, s.max_seq_len() - 1));
    const std::vector<int32_t>& doc = docs_[Rand(docs_.size())];
    const int shared = Rand(2) == 0 ? std::min(prompt_len, Rand(40)) : 0;
    spec.prompt_token_ids.assign(doc.begin(), doc.begin() + shared);
    while (static_cast<int>(spec.prompt_token_ids.size()) < prompt_len) {
      spec.prompt_token_ids.push_back(10 + Rand(50));
    }
    spec.n = std::min(Rand(4) == 0 ? 2 + Rand(2) : 1, s.config().max_num_seqs);
    spec.max_tokens = 1 + Rand(40);
    spec.min_tokens = Rand(4) == 0 ? Rand(3) : 0;
    spec.stop_token_ids = {kEos, kStopId};
    spec.priority = Rand(3);
    spec.tenant = std::string(1, static_cast<char>('a' + Rand(3)));
    if (Rand(8) == 0) spec.deadline_s = engine_->clock().NowSeconds() + 0.2 + 0.1 * Rand(30);
    ASSERT_TRUE(s.AddRequest(spec).ok());
    specs_[spec.request_id] = spec;
  }

  void Cancel() {
    if (specs_.empty()) return;
    const RequestId id = 1 + Rand(next_id_ - 1);
    if (engine_->scheduler().AbortRequest(id, FinishReason::kCancelled)) cancelled_.insert(id);
  }

  void Run(int num_requests) {
    int steps = 0;
    while (next_id_ <= num_requests || engine_->scheduler().has_unfinished_requests()) {
      ASSERT_LT(++steps, 20000) << "no progress";
      for (int k = Rand(3); k > 0 && next_id_ <= num_requests && Rand(2) == 0; --k) {
        ASSERT_NO_FATAL_FAILURE(AddRequest());
      }
      if (Rand(25) == 0) Cancel();
      engine_->Step([this] {
        if (Rand(25) == 0) Cancel();
      });
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      engine_->clock().Advance(0.05);
    }
  }

  void Verify(Totals* totals) {
    const KvStats kv = engine_->kv().stats();
    EXPECT_EQ(kv.num_used_blocks, 0) << "blocks lost";
    EXPECT_EQ(kv.num_free_blocks + kv.num_cached_free_blocks, kv.num_blocks);
    EXPECT_EQ(engine_->finished_order().size(), specs_.size());
    const int max_seq_len = engine_->scheduler().max_seq_len();
    for (const auto& [id, spec] : specs_) {
      for (int i = 0; i < spec.n; ++i) {
        ASSERT_NO_FATAL_FAILURE(VerifySample(spec, i, max_seq_len, totals));
      }
    }
    const SchedulerStats stats = engine_->scheduler().stats();
    totals->preemptions += stats.num_preemptions;
    totals->cached_prompt_tokens += stats.num_cached_prompt_tokens;
    totals->cow_copies += kv.num_cow_copies;
    totals->evictions += kv.num_evictions;
  }

 private:
  void VerifySample(const RequestSpec& spec, int sample, int max_seq_len, Totals* totals) {
    SCOPED_TRACE(::testing::Message() << "r" << spec.request_id << "." << sample);
    const FinishReason reason = engine_->SampleReason(spec.request_id, sample);
    std::vector<int32_t> out;
    const auto it = engine_->outputs().find(spec.request_id);
    if (it != engine_->outputs().end() && it->second.contains(sample)) out = it->second.at(sample);
    const int num_out = static_cast<int>(out.size());
    EXPECT_LE(num_out, spec.max_tokens);
    EXPECT_LE(static_cast<int>(spec.prompt_token_ids.size()) + num_out, max_seq_len);
    const auto is_stop = [](int32_t t) { return t == kEos || t == kStopId; };
    // No stop token after min_tokens except as the very last one.
    for (int k = spec.min_tokens; k + 1 < num_out; ++k) EXPECT_FALSE(is_stop(out[k])) << k;
    switch (reason) {
      case FinishReason::kStop:
        ++totals->num_stop;
        ASSERT_GT(num_out, spec.min_tokens);
        EXPECT_TRUE(is_stop(out.back()));
        break;
      case FinishReason::kLength:
        ++totals->num_length;
        EXPECT_EQ(num_out, spec.max_tokens);
        break;
      case FinishReason::kContextLength:
        ++totals->num_context;
        EXPECT_EQ(static_cast<int>(spec.prompt_token_ids.size()) + num_out, max_seq_len);
        break;
      case FinishReason::kCancelled:
        ++totals->num_cancelled;
        EXPECT_TRUE(cancelled_.contains(spec.request_id));
        break;
      case FinishReason::kDeadline:
        ++totals->num_deadline;
        ASSERT_TRUE(spec.deadline_s.has_value());
        EXPECT_GE(engine_->abort_times_s().at(spec.request_id), *spec.deadline_s);
        break;
      default:
        ADD_FAILURE() << "sample never ended: " << FinishReasonName(reason);
    }
  }

  std::mt19937 rng_;
  std::unique_ptr<FakeEngine> engine_;
  std::vector<std::vector<int32_t>> docs_;
  std::map<RequestId, RequestSpec> specs_;
  std::set<RequestId> cancelled_;
  RequestId next_id_ = 1;
};

TEST(SchedulerRandomTest, EveryRequestEndsRightAndNoBlockIsLost) {
  Totals totals;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    Simulation sim(seed);
    ASSERT_NO_FATAL_FAILURE(sim.Run(/*num_requests=*/150));
    ASSERT_NO_FATAL_FAILURE(sim.Verify(&totals));
  }
  // The scenarios really exercise every path.
  EXPECT_GT(totals.preemptions, 0);
  EXPECT_GT(totals.cached_prompt_tokens, 0);
  EXPECT_GT(totals.cow_copies, 0);
  EXPECT_GT(totals.evictions, 0);
  EXPECT_GT(totals.num_stop, 0);
  EXPECT_GT(totals.num_length, 0);
  EXPECT_GT(totals.num_context, 0);
  EXPECT_GT(totals.num_cancelled, 0);
  EXPECT_GT(totals.num_deadline, 0);
  RecordProperty("preemptions", std::to_string(totals.preemptions));
  RecordProperty("cached_prompt_tokens", std::to_string(totals.cached_prompt_tokens));
  RecordProperty("cow_copies", std::to_string(totals.cow_copies));
}

}  // namespace
}  // namespace tokenmill
