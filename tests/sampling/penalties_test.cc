// Penalty arithmetic on hand-computed examples (Sampler::ApplyPenalties, the first stage of
// Sample()).
#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenmill/sampling/sampler.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatEq;

Sampler MakeSampler(const SamplingParams& p, const std::vector<int32_t>& prompt) {
  absl::StatusOr<Sampler> s = Sampler::Create(p, prompt);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

TEST(PenaltiesTest, RepetitionDividesPositiveAndMultipliesNegative) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  // Prompt mentions 0 and 1 (1 twice: still penalised once); 2 is generated; 3, 4 unseen.
  Sampler s = MakeSampler(p, {0, 1, 1});
  s.Accept(2);
  s.Accept(2);
  std::vector<float> logits = {3.0f, -1.5f, 4.0f, 5.0f, -2.0f};
  s.ApplyPenalties(logits);
  EXPECT_THAT(logits, ElementsAre(FloatEq(1.5f), FloatEq(-3.0f), FloatEq(2.0f), FloatEq(5.0f),
                                  FloatEq(-2.0f)));
}

TEST(PenaltiesTest, RepetitionBelowOneEncouragesRepeats) {
  SamplingParams p;
  p.repetition_penalty = 0.5f;
  Sampler s = MakeSampler(p, {0, 1});
  std::vector<float> logits = {3.0f, -1.5f, 0.0f};
  s.ApplyPenalties(logits);
  EXPECT_THAT(logits, ElementsAre(FloatEq(6.0f), FloatEq(-0.75f), FloatEq(0.0f)));
}

TEST(PenaltiesTest, FrequencyAndPresenceCountGeneratedTokensOnly) {
  SamplingParams p;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  Sampler s = MakeSampler(p, {0});  // prompt tokens are not penalised by these
  for (int32_t t : {1, 1, 1, 2}) s.Accept(t);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  s.ApplyPenalties(logits);
  // token 1: 1 - 0.5 * 3 - 0.25; token 2: 1 - 0.5 - 0.25.
  EXPECT_THAT(logits, ElementsAre(FloatEq(1.0f), FloatEq(-0.75f), FloatEq(0.25f), FloatEq(1.0f)));
  EXPECT_EQ(s.GeneratedCount(1), 3);
  EXPECT_EQ(s.GeneratedCount(0), 0);
}

TEST(PenaltiesTest, NegativeFrequencyAndPresenceReward) {
  SamplingParams p;
  p.frequency_penalty = -1.0f;
  p.presence_penalty = -2.0f;
  Sampler s = MakeSampler(p, {});
  s.Accept(0);
  s.Accept(0);
  std::vector<float> logits = {0.0f, 0.0f};
  s.ApplyPenalties(logits);
  EXPECT_THAT(logits, ElementsAre(FloatEq(4.0f), FloatEq(0.0f)));
}

TEST(PenaltiesTest, RepetitionComesBeforeFrequencyAndPresence) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  p.presence_penalty = 0.5f;
  Sampler s = MakeSampler(p, {0, 1});
  s.Accept(1);
  s.Accept(1);
  s.Accept(3);
  std::vector<float> logits = {4.0f, 4.0f, 4.0f, -1.0f};
  s.ApplyPenalties(logits);
  // 0: prompt only -> 4/2. 1: prompt and output -> 4/2 - 1*2 - 0.5 (repetition once).
  // 2: unseen. 3: output -> -1*2 - 1 - 0.5.
  EXPECT_THAT(logits, ElementsAre(FloatEq(2.0f), FloatEq(-0.5f), FloatEq(4.0f), FloatEq(-3.5f)));
}

TEST(PenaltiesTest, IdsOutsideTheVocabularyAreIgnored) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 1.0f;
  Sampler s = MakeSampler(p, {-1, 1, 99});
  s.Accept(500);
  std::vector<float> logits = {2.0f, 2.0f};
  s.ApplyPenalties(logits);
  EXPECT_THAT(logits, ElementsAre(FloatEq(2.0f), FloatEq(1.0f)));
}

TEST(PenaltiesTest, PenaltiesChangeTheGreedyChoice) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 1.0f;
  Sampler s = MakeSampler(p, {});
  const std::vector<float> logits = {2.0f, 1.5f, 0.0f};
  EXPECT_EQ(s.SampleAndAccept(logits).token_id, 0);
  EXPECT_EQ(s.SampleAndAccept(logits).token_id, 1);  // 0 now at 1.0
  EXPECT_EQ(s.SampleAndAccept(logits).token_id, 0);  // presence is paid once: 1.0 > 0.5
}

TEST(PenaltiesTest, PenaltiesApplyBeforeSampling) {
  // Token 0 dominates (10 vs 0) until five repeats at frequency penalty 2 bring it to 0: a
  // three-way tie, so sampled requests (temperature 1) pick it a third of the time.
  const std::vector<float> logits = {10.0f, 0.0f, 0.0f};
  constexpr int kRequests = 3000;
  int zeros = 0;
  for (int i = 0; i < kRequests; ++i) {
    SamplingParams p;
    p.frequency_penalty = 2.0f;
    p.seed = i;
    Sampler s = MakeSampler(p, {});
    for (int j = 0; j < 5; ++j) s.Accept(0);
    zeros += s.Sample(logits).token_id == 0;
  }
  EXPECT_NEAR(zeros / double(kRequests), 1.0 / 3.0, 0.04);
}

}  // namespace
}  // namespace tokenmill
