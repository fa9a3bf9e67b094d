// Loops over a whole vocabulary row, written so that they vectorise or at least do not wait
// on one long dependency chain. (glibc's expf does not vectorise without -ffast-math and
// costs ~4 ns a call: 0.5 ms per 128k-token row.)
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

namespace tokenmill::sampling_internal {

// exp(x) for x <= 0, 0 for x < -87.33 (below FLT_MIN), -inf and NaN. Cephes expf: range
// reduction by ln 2 in two parts and a degree-6 polynomial; relative error < 3e-7.
// Branch-free so that GCC and Clang vectorise loops calling it.
inline float ExpNonPositive(float x) {
  constexpr float kMinArg = -87.33654f;  // exp(kMinArg) = FLT_MIN
  // All-ones where x is in range (false for NaN). Selecting by masking bits, not with
  // `cond ? a : b`, keeps GCC from threading a constant path through the polynomial, which
  // would stop it vectorising the caller's loop.
  const uint32_t mask = x >= kMinArg ? 0xFFFFFFFFu : 0u;
  x = std::bit_cast<float>(std::bit_cast<uint32_t>(x) & mask);  // out of range: exp(0)
  // Round x / ln2 to nearest with the 1.5 * 2^23 trick (no rounding-mode dependent call).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t biased = static_cast<int32_t>(n) + 127;  // n in [-126, 0]
  const float result = p * std::bit_cast<float>(biased << 23);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(result) & mask);
}

// Largest value; NaN never wins, -inf when nothing is larger. Eight lanes of compare-select
// vectorise where a single `m = v > m ? v : m` chain does not (GCC will not turn it into a
// max reduction without -ffinite-math-only).
inline float MaxIgnoringNaN(const float* v, size_t n) {
  constexpr float kNegInf = -__builtin_huge_valf();
  std::array<float, 8> lane;
  lane.fill(kNegInf);
  const size_t whole = n - n % 8;
  for (size_t i = 0; i < whole; i += 8) {
    for (size_t j = 0; j < 8; ++j) lane[j] = v[i + j] > lane[j] ? v[i + j] : lane[j];
  }
  float m = kNegInf;
  for (size_t i = whole; i < n; ++i) m = v[i] > m ? v[i] : m;
  for (float x : lane) m = x > m ? x : m;
  return m;
}

// Sum with independent accumulators: a single running double sum is bound by the add
// latency (~130 us for 128k values); eight chains are not, and doubles keep the tail of a
// large vocabulary that a float sum would drop.
inline double SumWeights(const float* w, size_t n) {
  std::array<double, 8> acc{};
  const size_t whole = n - n % 8;
  for (size_t i = 0; i < whole; i += 8) {
    for (size_t j = 0; j < 8; ++j) acc[j] += w[i + j];
  }
  double total = 0.0;
  for (size_t i = whole; i < n; ++i) total += w[i];
  for (double a : acc) total += a;
  return total;
}
inline double SumWeights(std::span<const float> w) { return SumWeights(w.data(), w.size()); }

}  // namespace tokenmill::sampling_internal
