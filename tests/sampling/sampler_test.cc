#include "tokenmill/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kDraws = 20000;

Sampler MakeSampler(const SamplingParams& p, const std::vector<int32_t>& prompt = {}) {
  absl::StatusOr<Sampler> s = Sampler::Create(p, prompt);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

std::vector<float> LogOf(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Normalises `weights`.
std::vector<double> Normalised(std::vector<double> weights) {
  double total = 0;
  for (double w : weights) total += w;
  for (double& w : weights) w /= total;
  return weights;
}

// Draws kDraws tokens from one seeded sampler and checks the frequencies against `expected`
// (chi-square at p = 0.001; tokens with expected probability 0 must never appear).
void ExpectDistribution(SamplingParams p, const std::vector<float>& logits,
                        const std::vector<double>& expected) {
  if (!p.seed) p.seed = 20240601;
  Sampler s = MakeSampler(p);
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < kDraws; ++i) ++counts[s.SampleAndAccept(logits).token_id];
  static constexpr double kCritical[] = {0,     10.83, 13.82, 16.27, 18.47, 20.52,
                                         22.46, 24.32, 26.12, 27.88, 29.59};
  double chi2 = 0;
  int bins = 0;
  for (size_t t = 0; t < logits.size(); ++t) {
    if (expected[t] == 0) {
      EXPECT_EQ(counts[t], 0) << "token " << t << " should be filtered out";
      continue;
    }
    const double e = expected[t] * kDraws;
    chi2 += (counts[t] - e) * (counts[t] - e) / e;
    ++bins;
  }
  ASSERT_GE(bins, 1);
  ASSERT_LE(bins, 11);
  if (bins > 1) {
    EXPECT_LT(chi2, kCritical[bins - 1]) << "chi-square with " << bins - 1 << " dof";
  }
}

const std::vector<double> kProbs = {0.4, 0.3, 0.15, 0.1, 0.05};

TEST(SamplerTest, TemperatureOneFollowsTheSoftmax) {
  ExpectDistribution(SamplingParams{}, LogOf(kProbs), kProbs);
}

TEST(SamplerTest, TemperatureSharpensAndFlattens) {
  SamplingParams p;
  p.temperature = 2.0f;
  std::vector<double> expected;
  for (double x : kProbs) expected.push_back(std::sqrt(x));
  ExpectDistribution(p, LogOf(kProbs), Normalised(expected));
  p.temperature = 0.5f;
  expected.clear();
  for (double x : kProbs) expected.push_back(x * x);
  ExpectDistribution(p, LogOf(kProbs), Normalised(expected));
}

TEST(SamplerTest, TopK) {
  SamplingParams p;
  p.top_k = 3;
  ExpectDistribution(p, LogOf(kProbs), Normalised({0.4, 0.3, 0.15, 0, 0}));
}

TEST(SamplerTest, TopP) {
  SamplingParams p;
  p.top_p = 0.8f;  // mass before 0.15 is 0.7 < 0.8: kept; before 0.1 is 0.85: cut
  ExpectDistribution(p, LogOf(kProbs), Normalised({0.4, 0.3, 0.15, 0, 0}));
}

TEST(SamplerTest, MinP) {
  SamplingParams p;
  p.min_p = 0.3f;  // keep p >= 0.3 * 0.4 = 0.12
  ExpectDistribution(p, LogOf(kProbs), Normalised({0.4, 0.3, 0.15, 0, 0}));
  p.min_p = 0.5f;  // keep p >= 0.2
  ExpectDistribution(p, LogOf(kProbs), Normalised({0.4, 0.3, 0, 0, 0}));
}

TEST(SamplerTest, TopPSeesTheTemperatureScaledDistribution) {
  // At temperature 2 the probabilities are ~ sqrt(p): 0.300 0.260 0.184 0.150 0.106, so
  // top_p 0.6 keeps three tokens (at temperature 1 it would keep two).
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_p = 0.6f;
  ExpectDistribution(p, LogOf(kProbs),
                     Normalised({std::sqrt(0.4), std::sqrt(0.3), std::sqrt(0.15), 0, 0}));
}

TEST(SamplerTest, TopPSeesTheTopKRenormalisedDistribution) {
  // After top_k 3 token 0 has 0.4 / 0.85 = 0.47 >= 0.45: alone. (Top-p on the full
  // distribution would also keep token 1.)
  SamplingParams p;
  p.top_k = 3;
  p.top_p = 0.45f;
  ExpectDistribution(p, LogOf(kProbs), {1, 0, 0, 0, 0});
}

TEST(SamplerTest, AllFiltersTogether) {
  // probs over 8 tokens; top_k 6 drops the two smallest; top_p 0.9 over the renormalised six
  // (0.30 0.25 0.15 0.12 0.10 0.08 -> /1.0) keeps five (mass before the sixth 0.92); min_p 0.35
  // then drops weights below 0.35 * 0.30 = 0.105: 0.10 goes.
  const std::vector<double> probs = {0.10, 0.25, 0.02, 0.30, 0.12, 0.015, 0.15, 0.08};
  SamplingParams p;
  p.top_k = 6;
  p.top_p = 0.9f;
  p.min_p = 0.35f;
  ExpectDistribution(p, LogOf(probs), Normalised({0, 0.25, 0, 0.30, 0.12, 0, 0.15, 0}));
}

TEST(SamplerTest, TinyTopPIsArgmax) {
  SamplingParams p;
  p.top_p = 1e-6f;
  p.seed = 3;
  Sampler s = MakeSampler(p);
  const std::vector<float> logits = {0.5f, 2.0f, 2.0f, 1.9f};
  for (int i = 0; i < 500; ++i) ASSERT_EQ(s.SampleAndAccept(logits).token_id, 1);
}

TEST(SamplerTest, TemperatureExtremes) {
  SamplingParams p;
  p.temperature = 1e-3f;  // above the greedy cut-off, but 0.1 / 1e-3 = 100 nats apart
  Sampler cold = MakeSampler(p);
  const std::vector<float> logits = {0.1f, 0.3f, 0.2f, 0.0f};
  for (int i = 0; i < 500; ++i) ASSERT_EQ(cold.SampleAndAccept(logits).token_id, 1);
  p.temperature = 1e4f;  // ~uniform
  ExpectDistribution(p, {0.0f, 1.0f, 2.0f, 5.0f}, {0.25, 0.25, 0.25, 0.25});
}

TEST(SamplerTest, GreedyTakesArgmaxWithTiesToLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s = MakeSampler(p);
  EXPECT_EQ(s.Sample(std::vector<float>{1.0f, 3.0f, 2.0f, 3.0f}).token_id, 1);
  EXPECT_EQ(s.Sample(std::vector<float>{kNegInf, 3.0f, 3.0f}).token_id, 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(s.Sample(std::vector<float>{nan, -1.0f, nan, -0.5f}).token_id, 3);
  EXPECT_EQ(s.Sample(std::vector<float>{kNegInf, kNegInf}).token_id, 0);
  // Same logits, any seed, any step: same answer.
  p.seed = 99;
  Sampler t = MakeSampler(p);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(t.SampleAndAccept(std::vector<float>{1.0f, 3.0f, 2.0f, 3.0f}).token_id, 1);
  }
}

TEST(SamplerTest, MaskedAndNaNTokensAreNeverSampled) {
  SamplingParams p;
  p.seed = 8;
  Sampler s = MakeSampler(p);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {kNegInf, 0.0f, nan, 0.0f, kNegInf};
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = s.SampleAndAccept(logits).token_id;
    ASSERT_TRUE(t == 1 || t == 3) << t;
  }
  EXPECT_EQ(s.Sample(std::vector<float>{kNegInf, kNegInf}).token_id, 0);
}

// Logits that change every step, like a model's.
std::vector<float> StepLogits(int step, int vocab) {
  std::mt19937 rng(1000 + step);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = d(rng);
  return logits;
}

std::vector<int32_t> Generate(Sampler& s, int steps, int vocab) {
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) out.push_back(s.SampleAndAccept(StepLogits(i, vocab)).token_id);
  return out;
}

SamplingParams Seeded(uint64_t seed) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.seed = seed;
  return p;
}

TEST(SamplerTest, SameSeedSameTokensWhateverTheBatch) {
  constexpr int kVocab = 500, kSteps = 64;
  Sampler alone = MakeSampler(Seeded(7));
  const std::vector<int32_t> expected = Generate(alone, kSteps, kVocab);

  // The same request inside a changing batch: other requests come and go, and the step loop
  // samples the batch in a different order each step.
  Sampler ours = MakeSampler(Seeded(7));
  std::vector<Sampler> others;
  for (int i = 0; i < 5; ++i) others.push_back(MakeSampler(Seeded(100 + i)));
  std::vector<int32_t> got;
  for (int step = 0; step < kSteps; ++step) {
    const std::vector<float> logits = StepLogits(step, kVocab);
    if (step % 2 == 0) others[step % others.size()].SampleAndAccept(logits);
    got.push_back(ours.SampleAndAccept(logits).token_id);
    for (Sampler& o : others) o.SampleAndAccept(StepLogits(step + 77, kVocab));
  }
  EXPECT_EQ(got, expected);

  // A different seed gives a different sequence.
  Sampler other_seed = MakeSampler(Seeded(8));
  EXPECT_NE(Generate(other_seed, kSteps, kVocab), expected);
}

TEST(SamplerTest, ReplayAfterPreemptionReproducesTheNextToken) {
  constexpr int kVocab = 300;
  Sampler original = MakeSampler(Seeded(42));
  const std::vector<int32_t> tokens = Generate(original, 20, kVocab);
  // A recreated sampler that is told the accepted tokens continues identically; repeated
  // Sample() calls without Accept() do not advance the stream.
  Sampler resumed = MakeSampler(Seeded(42));
  for (int i = 0; i < 12; ++i) resumed.Accept(tokens[i]);
  EXPECT_EQ(resumed.Sample(StepLogits(12, kVocab)).token_id, tokens[12]);
  EXPECT_EQ(resumed.Sample(StepLogits(12, kVocab)).token_id, tokens[12]);
  EXPECT_EQ(resumed.num_generated_tokens(), 12);
}

TEST(SamplerTest, UnseededRequestsDrawTheirOwnSeed) {
  SamplingParams p;
  Sampler a = MakeSampler(p);
  Sampler b = MakeSampler(p);
  EXPECT_NE(a.seed(), b.seed());
  // The drawn seed replays the run.
  const std::vector<int32_t> run = Generate(a, 30, 200);
  p.seed = a.seed();
  Sampler replay = MakeSampler(p);
  EXPECT_EQ(Generate(replay, 30, 200), run);
}

TEST(SamplerTest, LogprobsComeFromTheRawDistribution) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.logprobs = 2;
  p.presence_penalty = 2.0f;  // changes the choice, not the reported distribution
  Sampler s = MakeSampler(p);
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 3.0f};
  const double log_z = std::log(std::exp(1.0) + std::exp(2.0) + 2 * std::exp(3.0));

  SampledToken first = s.SampleAndAccept(logits);
  EXPECT_EQ(first.token_id, 2);
  EXPECT_NEAR(first.logprob, 3.0 - log_z, 1e-6);
  EXPECT_EQ(first.rank, 2);  // two tokens at logit >= 3 (vLLM counts ties)
  ASSERT_EQ(first.top_logprobs.size(), 2u);
  EXPECT_EQ(first.top_logprobs[0].token_id, 2);
  EXPECT_EQ(first.top_logprobs[1].token_id, 3);
  EXPECT_NEAR(first.top_logprobs[1].logprob, 3.0 - log_z, 1e-6);

  SampledToken second = s.SampleAndAccept(logits);  // token 2 now at 1.0 after the penalty
  EXPECT_EQ(second.token_id, 3);
  EXPECT_NEAR(second.logprob, 3.0 - log_z, 1e-6);  // raw, not penalised
  EXPECT_EQ(second.top_logprobs[0].token_id, 2);

  p.logprobs = 0;
  Sampler quiet = MakeSampler(p);
  SampledToken none = quiet.Sample(logits);
  EXPECT_TRUE(none.top_logprobs.empty());
  EXPECT_EQ(none.rank, 0);
}

TEST(SamplerTest, ComputeLogprobsTopNOnLargeVocabulary) {
  std::vector<float> logits = StepLogits(0, 50000);
  SampledToken out;
  ComputeLogprobs(logits, 123, 5, &out);
  std::vector<int32_t> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  double z = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x));
  ASSERT_EQ(out.top_logprobs.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(out.top_logprobs[i].token_id, order[i]);
    EXPECT_NEAR(out.top_logprobs[i].logprob, logits[order[i]] - std::log(z), 1e-4);
  }
  EXPECT_EQ(out.rank, std::find(order.begin(), order.end(), 123) - order.begin() + 1);
  double total = 0;
  for (float x : logits) total += std::exp(x - (logits[order[0]] - out.top_logprobs[0].logprob));
  EXPECT_NEAR(total, 1.0, 1e-4);
}

TEST(SamplerTest, LargeVocabularyDrawsStayInsideTheNucleus) {
  constexpr int kVocab = 128256;
  std::vector<float> logits = StepLogits(3, kVocab);
  SamplingParams p = Seeded(5);
  p.top_k = 0;
  p.top_p = 0.9f;
  p.temperature = 0.7f;
  // Reference nucleus by a full sort.
  std::vector<int32_t> order(kVocab);
  for (int i = 0; i < kVocab; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const float max_logit = logits[order[0]];
  double z = 0;
  for (float x : logits) z += std::exp((x - max_logit) / 0.7);
  std::vector<bool> in_nucleus(kVocab, false);
  double mass = 0;
  for (int32_t t : order) {
    if (mass >= 0.9 * z) break;
    in_nucleus[t] = true;
    mass += std::exp((logits[t] - max_logit) / 0.7);
  }
  Sampler s = MakeSampler(p);
  std::vector<bool> drawn;
  for (int i = 0; i < 200; ++i) drawn.push_back(in_nucleus[s.SampleAndAccept(logits).token_id]);
  EXPECT_THAT(drawn, Each(true));
}

TEST(SamplerTest, CreateRejectsInvalidParams) {
  SamplingParams p;
  p.top_p = 0.0f;
  absl::StatusOr<Sampler> s = Sampler::Create(p, {});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("top_p"));
}

}  // namespace
}  // namespace tokenmill
