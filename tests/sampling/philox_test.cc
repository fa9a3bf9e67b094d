#include "tokenmill/sampling/philox.h"

#include <set>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

// Random123's published known-answer vectors (tests/kat_vectors, philox4x32 10 rounds).
TEST(PhiloxTest, MatchesRandom123KnownAnswers) {
  EXPECT_EQ(Philox4x32({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(Philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(Philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(PhiloxTest, UsableAtCompileTime) {
  constexpr double u = PhiloxUniform(42, 7);
  static_assert(u >= 0.0 && u < 1.0);
  EXPECT_EQ(u, PhiloxUniform(42, 7));
}

TEST(PhiloxTest, UniformIsAFunctionOfSeedAndStepOnly) {
  EXPECT_EQ(PhiloxUniform(1, 0), PhiloxUniform(1, 0));
  EXPECT_NE(PhiloxUniform(1, 0), PhiloxUniform(2, 0));
  EXPECT_NE(PhiloxUniform(1, 0), PhiloxUniform(1, 1));
  // The high halves of seed and step matter too.
  EXPECT_NE(PhiloxUniform(1, 0), PhiloxUniform(1 | (1ull << 40), 0));
  EXPECT_NE(PhiloxUniform(1, 5), PhiloxUniform(1, 5 | (1ull << 33)));
}

TEST(PhiloxTest, UniformLooksUniform) {
  constexpr int kN = 100000;
  constexpr int kBins = 10;
  int counts[kBins] = {};
  double sum = 0;
  std::set<double> distinct;
  for (int i = 0; i < kN; ++i) {
    const double u = PhiloxUniform(12345, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    ++counts[static_cast<int>(u * kBins)];
    distinct.insert(u);
  }
  EXPECT_NEAR(sum / kN, 0.5, 0.005);
  double chi2 = 0;
  for (int c : counts) chi2 += (c - kN / kBins) * (c - kN / kBins) / double(kN / kBins);
  EXPECT_LT(chi2, 27.88);  // chi-square, 9 degrees of freedom, p = 0.001
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kN));
}

}  // namespace
}  // namespace tokenmill
