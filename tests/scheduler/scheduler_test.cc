// One rule per test; each expected step is one plan line (STYLE.md section 6).
#include "tokenmill/scheduler/scheduler.h"

#include <numeric>
#include <string>
#include <vector>

#include "fake_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using scheduler_testing::FakeEngine;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int32_t kEos = 2;

std::vector<int32_t> Prompt(int n, int32_t first = 100) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

RequestSpec Request(RequestId id, int prompt_len, int max_tokens = 4, int32_t first = 100) {
  RequestSpec spec;
  spec.request_id = id;
  spec.prompt_token_ids = Prompt(prompt_len, first);
  spec.max_tokens = max_tokens;
  spec.stop_token_ids = {kEos};
  return spec;
}

SchedulerConfig Config(int max_num_batched_tokens, int max_num_seqs) {
  SchedulerConfig config;
  config.max_num_batched_tokens = max_num_batched_tokens;
  config.max_num_seqs = max_num_seqs;
  config.max_model_len = 1024;
  config.kv_watermark = 0;
  return config;
}

KvCacheConfig Blocks(int num_blocks, int block_size = 4) {
  return KvCacheConfig{.num_blocks = num_blocks, .block_size = block_size};
}

TEST(SchedulerTest, LongPromptIsPrefilledInChunksThenDecoded) {
  FakeEngine e(Config(8, 4), Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 20, /*max_tokens=*/3)).ok());
  EXPECT_THAT(e.RunToCompletion(),
              ElementsAre("P r1[0,8)", "P r1[8,16)", "P r1[16,20)", "D r1", "D r1"));
  EXPECT_EQ(e.finish_reasons().size(), 0u);  // not aborted
  EXPECT_THAT(e.outputs().at(1).at(0), ElementsAre(7, 7, 7));
  EXPECT_EQ(e.Step(), "idle");
  EXPECT_EQ(e.kv().stats().num_used_blocks, 0);
}

TEST(SchedulerTest, DecodesGoFirstAndPrefillTakesTheRestOfTheBudget) {
  FakeEngine e(Config(8, 4), Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 3, 8)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 3, 8)).ok());
  EXPECT_EQ(e.Step(), "P r1[0,3) r2[0,3)");
  ASSERT_TRUE(e.scheduler().AddRequest(Request(3, 30, 8)).ok());
  EXPECT_EQ(e.Step(), "P r3[0,6) | D r1 r2");
  EXPECT_EQ(e.Step(), "P r3[6,12) | D r1 r2");
}

TEST(SchedulerTest, MaxNumSeqsBoundsTheRunningSet) {
  FakeEngine e(Config(16, 2), Blocks(64));
  for (RequestId id = 1; id <= 3; ++id) {
    ASSERT_TRUE(e.scheduler().AddRequest(Request(id, 4, /*max_tokens=*/2)).ok());
  }
  EXPECT_THAT(e.RunToCompletion(),
              ElementsAre("P r1[0,4) r2[0,4)", "D r1 r2", "P r3[0,4)", "D r3"));
}

TEST(SchedulerTest, ChunkedPrefillOffAdmitsOnlyWholePrompts) {
  SchedulerConfig config = Config(8, 4);
  config.enable_chunked_prefill = false;
  config.max_model_len = 8;
  FakeEngine e(config, Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 5, 2)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 5, 2, 300)).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r1[0,5)", "P r2[0,5) | D r1", "D r2"));
}

TEST(SchedulerTest, MaxPrefillChunkInterleavesLongPrompts) {
  SchedulerConfig config = Config(16, 4);
  config.max_prefill_chunk_tokens = 4;
  FakeEngine e(config, Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 8, 1)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 8, 1)).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r1[0,4) r2[0,4)", "P r1[4,8) r2[4,8)"));
}

TEST(SchedulerTest, MorePriorityIsAdmittedFirstAndFcfsWithinAPriority) {
  SchedulerConfig config = Config(16, 1);
  config.priority_aging_s = 0;
  FakeEngine e(config, Blocks(64));
  RequestSpec low = Request(1, 4, 1);
  low.priority = 1;
  ASSERT_TRUE(e.scheduler().AddRequest(low).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 4, 1)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(3, 4, 1)).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r2[0,4)", "P r3[0,4)", "P r1[0,4)"));
}

TEST(SchedulerTest, TenantsShareAdmissionsByWeight) {
  SchedulerConfig config = Config(16, 1);
  config.fair_share_quantum_tokens = 4;
  config.tenant_weights["a"] = 3;
  FakeEngine e(config, Blocks(64));
  // Tenant a floods the queue first; b's requests arrive after all of a's.
  for (RequestId id = 1; id <= 8; ++id) {
    RequestSpec spec = Request(id, 4, 1);
    spec.tenant = "a";
    ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  }
  for (RequestId id = 11; id <= 13; ++id) {
    RequestSpec spec = Request(id, 4, 1);
    spec.tenant = "b";
    ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  }
  e.RunToCompletion();
  // Per round a admits 3 (credit 12 tokens), b admits 1 (credit 4).
  EXPECT_THAT(e.finished_order(), ElementsAre(1, 2, 3, 11, 4, 5, 6, 12, 7, 8, 13));
}

TEST(SchedulerTest, FairShareChargesPromptTokens) {
  SchedulerConfig config = Config(64, 1);
  config.fair_share_quantum_tokens = 8;
  FakeEngine e(config, Blocks(64));
  // a sends long prompts (16 tokens), b short ones (4): equal weights, equal tokens.
  for (RequestId id = 1; id <= 3; ++id) {
    RequestSpec spec = Request(id, 16, 1);
    spec.tenant = "a";
    ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  }
  for (RequestId id = 11; id <= 18; ++id) {
    RequestSpec spec = Request(id, 4, 1, 500);
    spec.tenant = "b";
    ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  }
  e.RunToCompletion();
  EXPECT_THAT(e.finished_order(), ElementsAre(11, 12, 1, 13, 14, 15, 16, 2, 17, 18, 3));
}

TEST(SchedulerTest, PriorityAgingPreventsStarvation) {
  SchedulerConfig config = Config(16, 1);
  config.priority_aging_s = 1.0;
  FakeEngine e(config, Blocks(64));
  RequestSpec patient = Request(1, 4, 1);
  patient.priority = 3;
  ASSERT_TRUE(e.scheduler().AddRequest(patient).ok());
  // A stream of urgent requests keeps the single slot busy; 0.5 s per step.
  RequestId next = 100;
  int steps_until_served = 0;
  while (!e.outputs().contains(1) && steps_until_served < 100) {
    ASSERT_TRUE(e.scheduler().AddRequest(Request(next++, 4, 1)).ok());
    e.Step();
    e.clock().Advance(0.5);
    ++steps_until_served;
  }
  // Effective priority reaches -1 (< 0) after 4 s of waiting: 8 steps + 1.
  EXPECT_EQ(steps_until_served, 9);
}

TEST(SchedulerTest, StrictPriorityStarvesWithoutAging) {
  SchedulerConfig config = Config(16, 1);
  config.priority_aging_s = 0;
  FakeEngine e(config, Blocks(64));
  RequestSpec patient = Request(1, 4, 1);
  patient.priority = 3;
  ASSERT_TRUE(e.scheduler().AddRequest(patient).ok());
  for (RequestId id = 100; id < 150; ++id) {
    ASSERT_TRUE(e.scheduler().AddRequest(Request(id, 4, 1)).ok());
    e.Step();
    e.clock().Advance(0.5);
  }
  EXPECT_FALSE(e.outputs().contains(1));
}

TEST(SchedulerTest, PreemptsTheLatestArrivalByRecomputeAndResumesIt) {
  // 4 blocks of 4 tokens; two sequences of 6 prompt tokens fill them after 8 tokens each.
  FakeEngine e(Config(32, 4), Blocks(4));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 6, 5)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 6, 5, 200)).ok());
  EXPECT_THAT(e.RunToCompletion(),
              ElementsAre("P r1[0,6) r2[0,6)",  // 2 blocks each: the pool is full
                          "D r1 r2",            // positions 6: room in block 2 of 2
                          "D r1 r2",            // positions 7
                          "D r1 | preempt r2",  // r1 needs a third block: r2 gives way
                          "D r1",               // r1 finishes (5 tokens)
                          "P r2[4,9)",          // r2 recomputes prompt + its 3 tokens,
                          "D r2"));             // its first block still cached
  EXPECT_EQ(e.scheduler().stats().num_preemptions, 1);
  EXPECT_THAT(e.outputs().at(2).at(0), ElementsAre(7, 7, 7, 7, 7));
}

TEST(SchedulerTest, PreemptsTheLeastUrgentEvenIfItArrivedFirst) {
  FakeEngine e(Config(32, 4), Blocks(4));
  RequestSpec background = Request(1, 6, 5);
  background.priority = 5;
  ASSERT_TRUE(e.scheduler().AddRequest(background).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 6, 5, 200)).ok());
  EXPECT_EQ(e.Step(), "P r2[0,6) r1[0,6)");  // priority first at admission, too
  EXPECT_EQ(e.Step(), "D r2 r1");
  EXPECT_EQ(e.Step(), "D r2 r1");
  EXPECT_EQ(e.Step(), "D r2 | preempt r1");  // r2 needs a block: r1 gives way
}

TEST(SchedulerTest, WatermarkHoldsBackAdmissionWhileOthersRun) {
  SchedulerConfig config = Config(32, 4);
  config.kv_watermark = 0.4;  // 2 of 5 blocks
  FakeEngine e(config, Blocks(5));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 8, 2)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 8, 2, 300)).ok());
  // r1 may dip into the watermark (nothing runs yet); r2 gets what leaves 2 blocks free.
  EXPECT_EQ(e.Step(), "P r1[0,8) r2[0,4)");
  // Running sequences grow into the watermark.
  EXPECT_EQ(e.Step(), "P r2[4,8) | D r1");
}

TEST(SchedulerTest, FinishReasonsFollowTokenIds) {
  FakeEngine e(Config(32, 8), Blocks(64));
  e.set_sampler([](const Sequence& seq, int) {
    // r1 emits EOS at once, r2 emits it as its 2nd token (min_tokens 2 makes it ordinary).
    if (seq.request_id == 1) return kEos;
    if (seq.request_id == 2 && seq.num_output_tokens() == 1) return kEos;
    return int32_t{7};
  });
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 4, 10)).ok());
  RequestSpec min_tokens = Request(2, 4, 3);
  min_tokens.min_tokens = 2;
  ASSERT_TRUE(e.scheduler().AddRequest(min_tokens).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(3, 4, 2)).ok());
  e.RunToCompletion();
  EXPECT_THAT(e.outputs().at(1).at(0), ElementsAre(kEos));
  EXPECT_THAT(e.outputs().at(2).at(0), ElementsAre(7, kEos, 7));
  EXPECT_THAT(e.outputs().at(3).at(0), ElementsAre(7, 7));
  EXPECT_EQ(e.SampleReason(1, 0), FinishReason::kStop);
  EXPECT_EQ(e.SampleReason(2, 0), FinishReason::kLength);
  EXPECT_EQ(e.SampleReason(3, 0), FinishReason::kLength);
}

TEST(SchedulerTest, ContextLengthEndsASequenceAtMaxModelLen) {
  SchedulerConfig config = Config(32, 4);
  config.max_model_len = 10;
  FakeEngine e(config, Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 7, 100)).ok());
  e.RunToCompletion();
  EXPECT_EQ(e.outputs().at(1).at(0).size(), 3u);
  EXPECT_EQ(e.SampleReason(1, 0), FinishReason::kContextLength);
}

TEST(SchedulerTest, MaxSeqLenIsCappedByThePool) {
  FakeEngine e(Config(32, 4), Blocks(4));  // 16 tokens
  EXPECT_EQ(e.scheduler().max_seq_len(), 16);
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 15, 100)).ok());
  e.RunToCompletion();
  EXPECT_EQ(e.SampleReason(1, 0), FinishReason::kContextLength);
  EXPECT_THAT(std::string(e.scheduler().AddRequest(Request(2, 16)).message()),
              HasSubstr("no room to generate"));
}

TEST(SchedulerTest, AbortTakesEffectAtTheNextStepAndFreesEveryBlock) {
  FakeEngine e(Config(32, 4), Blocks(16));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 9, 100)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 9, 100, 300)).ok());
  EXPECT_EQ(e.Step(), "P r1[0,9) r2[0,9)");
  // A cancellation that arrives while a step is in flight lets that step complete.
  EXPECT_EQ(e.Step([&] { EXPECT_TRUE(e.scheduler().AbortRequest(1, FinishReason::kCancelled)); }),
            "D r1 r2");
  EXPECT_THAT(e.outputs().at(1).at(0), ElementsAre(7, 7));
  EXPECT_EQ(e.kv().stats().num_used_blocks, 6);
  EXPECT_EQ(e.Step(), "D r2 | abort r1:cancelled");
  EXPECT_EQ(e.kv().stats().num_used_blocks, 3);
  EXPECT_EQ(e.finish_reasons().at(1), FinishReason::kCancelled);
  EXPECT_FALSE(e.scheduler().AbortRequest(1, FinishReason::kCancelled));  // already gone
  EXPECT_TRUE(e.scheduler().AbortRequest(2, FinishReason::kError));
  EXPECT_EQ(e.Step(), "abort r2:error");
  EXPECT_EQ(e.kv().stats().num_used_blocks, 0);
  EXPECT_FALSE(e.scheduler().has_unfinished_requests());
}

TEST(SchedulerTest, DeadlinesAbortWaitingAndRunningRequests) {
  FakeEngine e(Config(32, 1), Blocks(16));
  RequestSpec running = Request(1, 4, 100);
  running.deadline_s = e.clock().NowSeconds() + 1.0;
  RequestSpec waiting = Request(2, 4, 100);
  waiting.deadline_s = e.clock().NowSeconds() + 2.0;
  ASSERT_TRUE(e.scheduler().AddRequest(running).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(waiting).ok());
  EXPECT_EQ(e.Step(), "P r1[0,4)");
  e.clock().Advance(0.99);
  EXPECT_EQ(e.Step(), "D r1");
  e.clock().Advance(0.01);
  EXPECT_EQ(e.Step(), "P r2[0,4) | abort r1:deadline");
  e.clock().Advance(1.0);
  EXPECT_EQ(e.Step(), "abort r2:deadline");
  EXPECT_EQ(e.kv().stats().num_used_blocks, 0);
}

TEST(SchedulerTest, AReusedRequestIdDoesNotInheritAnOldDeadline) {
  FakeEngine e(Config(32, 4), Blocks(16));
  RequestSpec first = Request(1, 4, 1);
  first.deadline_s = e.clock().NowSeconds() + 1.0;
  ASSERT_TRUE(e.scheduler().AddRequest(first).ok());
  EXPECT_EQ(e.Step(), "P r1[0,4)");  // done in one step
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 4, 3, 300)).ok());
  e.clock().Advance(2.0);
  EXPECT_EQ(e.Step(), "P r1[0,4)");
  EXPECT_EQ(e.Step(), "D r1");
}

TEST(SchedulerTest, ParallelSamplesForkAfterThePromptAndCopyTheSharedBlock) {
  FakeEngine e(Config(32, 4), Blocks(16));
  e.set_sampler([](const Sequence&, int sample) { return 10 + sample; });
  RequestSpec spec = Request(1, 6, 2);
  spec.n = 3;
  ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  // Blocks 0 (full) and 1 (2 tokens) are shared; the first two writers copy block 1.
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r1[0,6)x3", "D r1 r1.1 r1.2 | copy 1>2 1>3"));
  EXPECT_THAT(e.outputs().at(1).at(0), ElementsAre(10, 10));
  EXPECT_THAT(e.outputs().at(1).at(1), ElementsAre(11, 10));
  EXPECT_THAT(e.outputs().at(1).at(2), ElementsAre(12, 10));
  EXPECT_EQ(e.scheduler().stats().num_prefill_tokens, 6);  // the prompt once, not 3 times
}

TEST(SchedulerTest, ParallelSamplesReserveTheirSlotsAtAdmission) {
  FakeEngine e(Config(32, 3), Blocks(64));
  RequestSpec spec = Request(1, 4, 2);
  spec.n = 2;
  ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(2, 4, 2, 300)).ok());
  ASSERT_TRUE(e.scheduler().AddRequest(Request(3, 4, 2, 400)).ok());
  EXPECT_THAT(e.RunToCompletion(),
              ElementsAre("P r1[0,4)x2 r2[0,4)", "D r1 r2 r1.1", "P r3[0,4)", "D r3"));
}

TEST(SchedulerTest, CancellingBeforeTheForkEndsEverySample) {
  FakeEngine e(Config(8, 4), Blocks(64));
  RequestSpec spec = Request(1, 12, 2);
  spec.n = 3;
  ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  EXPECT_EQ(e.Step(), "P r1[0,8)");
  ASSERT_TRUE(e.scheduler().AbortRequest(1, FinishReason::kCancelled));
  EXPECT_EQ(e.Step(), "abort r1:cancelled r1.1:cancelled r1.2:cancelled");
  EXPECT_EQ(e.kv().stats().num_used_blocks, 0);
}

TEST(SchedulerTest, SharedPrefixComputesOnlyTheUncachedSuffix) {
  FakeEngine e(Config(64, 4), Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 40, 1)).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r1[0,40)"));
  RequestSpec second = Request(2, 36, 1);
  for (int32_t t : Prompt(8, 900)) second.prompt_token_ids.push_back(t);
  ASSERT_TRUE(e.scheduler().AddRequest(second).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r2[36,44)"));
  EXPECT_EQ(e.num_prefill_tokens(), 40 + 8);
  EXPECT_EQ(e.scheduler().stats().num_cached_prompt_tokens, 36);
  // The whole prompt cached still computes its last token for the logits.
  ASSERT_TRUE(e.scheduler().AddRequest(Request(3, 40, 1)).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r3[36,40)"));
}

TEST(SchedulerTest, CacheSaltSeparatesPrefixes) {
  FakeEngine e(Config(64, 4), Blocks(64));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 20, 1)).ok());
  e.RunToCompletion();
  RequestSpec salted = Request(2, 20, 1);
  salted.cache_salt = 42;
  ASSERT_TRUE(e.scheduler().AddRequest(salted).ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r2[0,20)"));
}

TEST(SchedulerTest, DiscardedStepIsPlannedAgain) {
  FakeEngine e(Config(32, 4), Blocks(16));
  ASSERT_TRUE(e.scheduler().AddRequest(Request(1, 5, 2)).ok());
  EXPECT_EQ(e.scheduler().Schedule().ToString(), "P r1[0,5)");
  e.scheduler().DiscardStep();
  ASSERT_TRUE(e.scheduler().CheckInvariants().ok());
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r1[0,5)", "D r1"));
}

TEST(SchedulerTest, DiscardedCopyOnWritePreemptsTheCopier) {
  FakeEngine e(Config(32, 4), Blocks(16));
  RequestSpec spec = Request(1, 6, 3);
  spec.n = 2;
  ASSERT_TRUE(e.scheduler().AddRequest(spec).ok());
  EXPECT_EQ(e.Step(), "P r1[0,6)x2");
  EXPECT_EQ(e.scheduler().Schedule().ToString(), "D r1 r1.1 | copy 1>2");
  e.scheduler().DiscardStep();
  ASSERT_TRUE(e.scheduler().CheckInvariants().ok());
  // r1 lost its copy: it recomputes from its cached first block while r1.1 goes on.
  EXPECT_THAT(e.RunToCompletion(), ElementsAre("P r1[4,7) | D r1.1", "D r1.1 r1"));
  EXPECT_EQ(e.scheduler().stats().num_preemptions, 1);
}

TEST(SchedulerTest, RejectsRequestsItCanNeverServe) {
  FakeEngine e(Config(32, 4), Blocks(64));
  Scheduler& s = e.scheduler();
  EXPECT_THAT(std::string(s.AddRequest(Request(1, 0)).message()), HasSubstr("prompt_token_ids"));
  RequestSpec many = Request(2, 4);
  many.n = 5;
  EXPECT_THAT(std::string(s.AddRequest(many).message()), HasSubstr("n must be in [1, 4]"));
  EXPECT_THAT(std::string(s.AddRequest(Request(3, 4, 0)).message()), HasSubstr("max_tokens"));
  ASSERT_TRUE(s.AddRequest(Request(4, 4)).ok());
  EXPECT_EQ(s.AddRequest(Request(4, 4)).code(), absl::StatusCode::kAlreadyExists);
}

TEST(SchedulerConfigTest, ValidateNamesTheField) {
  SchedulerConfig config;
  config.max_num_batched_tokens = 8;
  config.max_num_seqs = 16;
  EXPECT_THAT(std::string(config.Validate().message()),
              HasSubstr("scheduler.max_num_batched_tokens"));
  config = SchedulerConfig();
  config.tenant_weights["x"] = 0;
  EXPECT_THAT(std::string(config.Validate().message()), HasSubstr("tenant_weights[\"x\"]"));
  config = SchedulerConfig();
  config.enable_chunked_prefill = false;
  EXPECT_THAT(std::string(config.Validate().message()), HasSubstr("chunked prefill is off"));
  EXPECT_TRUE(SchedulerConfig().Validate().ok());
}

}  // namespace
}  // namespace tokenmill
