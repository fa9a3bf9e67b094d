// RopeInverseFrequencies against the formulas of HF transformers' rope utilities.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tokenmill/backend/backend.h"

namespace tokenmill {
namespace {

std::vector<double> DefaultRef(double theta, int dim) {
  std::vector<double> f(dim / 2);
  for (int i = 0; i < dim / 2; ++i) f[i] = 1.0 / std::pow(theta, 2.0 * i / dim);
  return f;
}

TEST(RopeInverseFrequenciesTest, DefaultMatchesFormula) {
  RopeParams p;
  p.head_dim = 128;
  p.rotary_dim = 128;
  p.theta = 10000.0f;
  const std::vector<float> f = RopeInverseFrequencies(p);
  const std::vector<double> ref = DefaultRef(10000.0, 128);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(f[0], 1.0f);
  for (size_t i = 0; i < f.size(); ++i) EXPECT_NEAR(f[i], ref[i], 2e-7 * ref[i]) << i;
}

TEST(RopeInverseFrequenciesTest, RotaryDimDefaultsToHeadDim) {
  RopeParams p;
  p.head_dim = 64;
  p.rotary_dim = 0;
  EXPECT_EQ(RopeInverseFrequencies(p).size(), 32u);
  p.rotary_dim = 16;
  EXPECT_EQ(RopeInverseFrequencies(p).size(), 8u);
}

TEST(RopeInverseFrequenciesTest, LinearScalingDividesByFactor) {
  RopeParams p;
  p.head_dim = p.rotary_dim = 64;
  const std::vector<float> plain = RopeInverseFrequencies(p);
  p.scaling = RopeScalingType::kLinear;
  p.factor = 4.0f;
  const std::vector<float> scaled = RopeInverseFrequencies(p);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(scaled[i], plain[i] / 4.0f);
}

// Llama 3.1's parameters: theta 500000, factor 8, low 1, high 4, original 8192.
TEST(RopeInverseFrequenciesTest, Llama3ScalingHasThreeBands) {
  RopeParams p;
  p.head_dim = p.rotary_dim = 128;
  p.theta = 500000.0f;
  p.scaling = RopeScalingType::kLlama3;
  p.factor = 8.0f;
  p.low_freq_factor = 1.0f;
  p.high_freq_factor = 4.0f;
  p.original_max_position_embeddings = 8192;
  const std::vector<float> f = RopeInverseFrequencies(p);
  RopeParams plain_params = p;
  plain_params.scaling = RopeScalingType::kNone;
  const std::vector<float> plain = RopeInverseFrequencies(plain_params);
  const std::vector<double> ref = DefaultRef(500000.0, 128);
  int high = 0, low = 0, medium = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    const double wavelen = 2 * M_PI / ref[i];
    double expected;
    if (wavelen < 8192.0 / 4.0) {
      expected = ref[i];
      EXPECT_EQ(f[i], plain[i]) << i;  // untouched
      ++high;
    } else if (wavelen > 8192.0 / 1.0) {
      expected = ref[i] / 8.0;
      EXPECT_EQ(f[i], plain[i] / 8.0f) << i;
      ++low;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * ref[i] / 8.0 + smooth * ref[i];
      ++medium;
    }
    EXPECT_NEAR(f[i], expected, 1e-6 * expected) << i;
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(medium, 0);
}

}  // namespace
}  // namespace tokenmill
