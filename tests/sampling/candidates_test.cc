#include "tokenmill/sampling/candidates.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sampling/vector_math.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

CandidateSet FromWeights(const std::vector<float>& weights) {
  CandidateSet c;
  for (size_t i = 0; i < weights.size(); ++i) {
    c.token_ids.push_back(static_cast<int32_t>(i));
    c.values.push_back(weights[i]);
  }
  return c;
}

// Token ids of the n most likely entries of `values` by a full sort (ties to lower id),
// returned in ascending id order.
std::vector<int32_t> ReferenceTopK(const std::vector<float>& values, size_t n) {
  std::vector<int32_t> order;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] > kNegInf) order.push_back(static_cast<int32_t>(i));
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  order.resize(std::min(n, order.size()));
  std::sort(order.begin(), order.end());
  return order;
}

// Quantised so that ties occur; `flat`: weights within a factor 50, else a steep power law.
std::vector<float> RandomWeights(size_t n, std::mt19937& rng, bool flat) {
  std::uniform_int_distribution<int> level(1, 50);
  std::vector<float> w(n);
  for (float& x : w) x = flat ? level(rng) / 50.0f : std::pow(level(rng) / 50.0f, 12.0f);
  return w;
}

TEST(CandidatesTest, MaxLogitSkipsNaN) {
  EXPECT_EQ(MaxLogit(std::vector<float>{1.0f, kNaN, 3.0f, -2.0f}), 3.0f);
  EXPECT_EQ(MaxLogit(std::vector<float>{kNaN, kNegInf}), kNegInf);
  EXPECT_EQ(MaxLogit(std::vector<float>{}), kNegInf);
}

TEST(CandidatesTest, MaskedTokensGetZeroWeight) {
  CandidateSet c;
  SelectAll(std::vector<float>{0.5f, kNegInf, kNaN, -3.0f}, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(0, 1, 2, 3));
  const double total = ToWeights(0.5f, 1.0f, &c);
  EXPECT_THAT(c.values, ElementsAre(1.0f, 0.0f, 0.0f, ::testing::FloatEq(std::exp(-3.5f))));
  EXPECT_NEAR(total, 1.0 + std::exp(-3.5), 1e-6);
  for (double u : {0.0, 0.5, 0.97, 0.9999}) {
    const int32_t t = DrawCandidate(u, total, c);
    EXPECT_TRUE(t == 0 || t == 3) << t;
  }
  CandidateSet d = c;
  KeepMinP(0.01f, &d);
  EXPECT_THAT(d.token_ids, ElementsAre(0, 3));
}

TEST(CandidatesTest, TopKKeepsTheLargestWithLowIdsOnTies) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, 0.5f, 3.0f};
  CandidateSet c;
  SelectTopK(logits, 2, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(1, 3));
  SelectTopK(logits, 4, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(1, 2, 3, 5));
  SelectTopK(logits, 0, &c);
  EXPECT_EQ(c.size(), 6u);
  SelectTopK(logits, 6, &c);
  EXPECT_EQ(c.size(), 6u);
  // Masked tokens never count; fewer than k unmasked: all of them.
  SelectTopK(std::vector<float>{kNegInf, kNaN, 1.0f, kNegInf}, 2, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(2));
  SelectTopK(std::vector<float>{kNaN, 2.0f, kNaN, 1.0f, 0.0f}, 2, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(1, 3));
}

TEST(CandidatesTest, TopKMatchesFullSort) {
  std::mt19937 rng(3);
  for (size_t n : {5u, 300u, 5000u}) {
    for (int k : {1, 2, 17, 256, 1000, 2000}) {  // > 1024 takes the nth_element path
      const std::vector<float> logits = RandomWeights(n, rng, /*flat=*/true);
      CandidateSet c;
      SelectTopK(logits, k, &c);
      EXPECT_EQ(c.token_ids, ReferenceTopK(logits, k)) << "n=" << n << " k=" << k;
      for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c.values[i], logits[c.token_ids[i]]);
    }
  }
}

TEST(CandidatesTest, VectorisedExpIsAccurate) {
  for (float x = -87.0f; x <= 0.0f; x += 0.0013f) {
    const double want = std::exp(static_cast<double>(x));
    ASSERT_NEAR(sampling_internal::ExpNonPositive(x) / want, 1.0, 3e-7) << x;
  }
  EXPECT_EQ(sampling_internal::ExpNonPositive(0.0f), 1.0f);
  EXPECT_EQ(sampling_internal::ExpNonPositive(-90.0f), 0.0f);
  EXPECT_EQ(sampling_internal::ExpNonPositive(kNegInf), 0.0f);
  EXPECT_EQ(sampling_internal::ExpNonPositive(kNaN), 0.0f);
}

TEST(CandidatesTest, ToWeightsAppliesTemperature) {
  CandidateSet c = FromWeights({2.0f, 0.0f, -500.0f});
  const double total = ToWeights(2.0f, 0.5f, &c);  // temperature 2
  EXPECT_FLOAT_EQ(c.values[0], 1.0f);
  EXPECT_FLOAT_EQ(c.values[1], std::exp(-1.0f));
  EXPECT_EQ(c.values[2], 0.0f);
  EXPECT_NEAR(total, 1.0 + std::exp(-1.0), 1e-6);
}

TEST(CandidatesTest, TopPKeepsSmallestSetReachingP) {
  const CandidateSet all = FromWeights({0.1f, 0.4f, 0.05f, 0.3f, 0.15f});
  CandidateSet c = all;
  double kept = KeepTopP(0.6f, 1.0, &c);  // 0.4 < 0.6, then 0.7 >= 0.6: stop
  EXPECT_THAT(c.token_ids, ElementsAre(1, 3));
  EXPECT_NEAR(kept, 0.7, 1e-6);
  c = all;
  kept = KeepTopP(0.8f, 1.0, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(1, 3, 4));
  EXPECT_NEAR(kept, 0.85, 1e-6);
  c = all;
  KeepTopP(1e-6f, 1.0, &c);  // tiny p: the most likely token only
  EXPECT_THAT(c.token_ids, ElementsAre(1));
  c = all;
  KeepTopP(0.999f, 1.0, &c);  // everything needed
  EXPECT_THAT(c.token_ids, ElementsAre(0, 1, 2, 3, 4));
}

TEST(CandidatesTest, TopPTieBreaksToLowerIds) {
  CandidateSet c = FromWeights({0.25f, 0.25f, 0.25f, 0.25f});
  KeepTopP(0.5f, 1.0, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(0, 1));
}

// The histogram and the partial ordering of the boundary bucket must agree with a full sort:
// peaked and flat weights, many ties, one huge boundary bucket (all weights equal).
TEST(CandidatesTest, TopPMatchesFullSort) {
  std::mt19937 rng(11);
  for (size_t n : {1u, 7u, 255u, 257u, 2000u, 20000u}) {
    for (int shape = 0; shape < 3; ++shape) {
      for (float p : {0.05f, 0.5f, 0.9f, 0.99f}) {
        std::vector<float> w =
            shape == 2 ? std::vector<float>(n, 0.5f) : RandomWeights(n, rng, /*flat=*/shape == 1);
        double total = 0;
        for (float x : w) total += x;
        std::vector<int32_t> order = ReferenceTopK(w, n);
        std::sort(order.begin(), order.end(),
                  [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
        double mass = 0;
        size_t keep = 0;
        while (keep < order.size() && (keep == 0 || mass < p * total)) mass += w[order[keep++]];
        order.resize(keep);
        std::sort(order.begin(), order.end());
        CandidateSet c = FromWeights(w);
        const double kept = KeepTopP(p, total, &c);
        ASSERT_EQ(c.token_ids, order) << "n=" << n << " shape=" << shape << " p=" << p;
        EXPECT_NEAR(kept, mass, 1e-9 * total);
      }
    }
  }
}

TEST(CandidatesTest, MinPIsRelativeToTheLargestWeight) {
  CandidateSet c = FromWeights({0.2f, 0.8f, 0.39f, 0.4f});
  const double kept = KeepMinP(0.5f, &c);  // threshold 0.4
  EXPECT_THAT(c.token_ids, ElementsAre(1, 3));
  EXPECT_NEAR(kept, 1.2, 1e-6);
  c = FromWeights({0.2f, 0.8f});
  KeepMinP(1.0f, &c);
  EXPECT_THAT(c.token_ids, ElementsAre(1));
}

TEST(CandidatesTest, DrawWalksTheCumulativeWeightsInIdOrder) {
  CandidateSet c;
  c.token_ids = {7, 8, 9, 10};
  c.values = {0.5f, 0.0f, 0.25f, 0.25f};
  EXPECT_EQ(DrawCandidate(0.0, 1.0, c), 7);
  EXPECT_EQ(DrawCandidate(0.4999, 1.0, c), 7);
  EXPECT_EQ(DrawCandidate(0.5, 1.0, c), 9);  // zero weight never drawn
  EXPECT_EQ(DrawCandidate(0.7499, 1.0, c), 9);
  EXPECT_EQ(DrawCandidate(0.75, 1.0, c), 10);
  // A total slightly above the real sum (rounding) still lands on a token with weight.
  CandidateSet d = FromWeights({0.5f, 0.5f, 0.0f});
  EXPECT_EQ(DrawCandidate(0.9999999, 1.0000001, d), 1);
}

TEST(CandidatesTest, DrawSkippingBlocksMatchesASequentialWalk) {
  std::mt19937 rng(5);
  const std::vector<float> w = RandomWeights(3000, rng, /*flat=*/false);
  CandidateSet c = FromWeights(w);
  double total = 0;
  for (float x : w) total += x;
  for (int i = 0; i < 2000; ++i) {
    const double u = (i + 0.5) / 2000;
    double running = 0;
    int32_t want = -1;
    for (size_t t = 0; t < w.size() && want < 0; ++t) {
      running += w[t];
      if (running > u * total) want = static_cast<int32_t>(t);
    }
    ASSERT_EQ(DrawCandidate(u, total, c), want) << u;
  }
}

}  // namespace
}  // namespace tokenmill
