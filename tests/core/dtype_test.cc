#include "tokenmill/core/dtype.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

TEST(DTypeTest, HalfRoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = F16ToF32(bits);
    if (std::isnan(f)) continue;
    EXPECT_EQ(F32ToF16(f), bits) << "half bits " << h;
  }
}

TEST(DTypeTest, HalfRoundsToNearestEven) {
  EXPECT_EQ(F16ToF32(F32ToF16(1.0f + 1.0f / 2048)), 1.0f);           // tie -> even
  EXPECT_EQ(F16ToF32(F32ToF16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);  // tie -> even
  EXPECT_EQ(F16ToF32(F32ToF16(65520.0f)), INFINITY);
  EXPECT_EQ(F16ToF32(F32ToF16(5.960464477539063e-08f)), 5.960464477539063e-08f);  // min subnormal
}

TEST(DTypeTest, BFloat16MatchesTruncationWithRounding) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 10.0f);
  for (int i = 0; i < 10000; ++i) {
    const float f = dist(rng);
    const float r = Bf16ToF32(F32ToBf16(f));
    EXPECT_LE(std::fabs(r - f), std::fabs(f) * (1.0f / 256)) << f;
  }
}

TEST(DTypeTest, BytesAndNames) {
  EXPECT_EQ(DTypeBytes(DType::kQ8_0, 64), 68u);
  EXPECT_EQ(DTypeBytes(DType::kBF16, 3), 6u);
  EXPECT_EQ(*ParseDType("Q8_0"), DType::kQ8_0);
  EXPECT_FALSE(ParseDType("Q4_K").ok());
}

}  // namespace
}  // namespace tokenmill
