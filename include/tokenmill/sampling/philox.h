// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11; Random123).
//
// A counter-based generator has no state to share: the numbers of step i of a request are a
// pure function of (seed, i). That is what makes a seeded request reproduce the same tokens
// whatever else is in the batch, however steps are timed, and after preemption, and what lets
// the CUDA sampler (kernels/) compute the same numbers on the device. Header-only and free of
// dependencies so device code can include it.
#pragma once

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define TM_PHILOX_HD __host__ __device__
#else
#define TM_PHILOX_HD
#endif

namespace tokenmill {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// Philox4x32 with 10 rounds; matches Random123's known-answer vectors.
TM_PHILOX_HD constexpr PhiloxCounter Philox4x32(PhiloxCounter ctr, PhiloxKey key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kW0;
      key[1] += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
           static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
  }
  return ctr;
}

// The uniform double in [0, 1) of draw `step` of the stream `seed`: Philox4x32-10 with
// key = seed (low word first) and counter = (step low, step high, 0, 0); the first two output
// words give 53 random bits.
TM_PHILOX_HD constexpr double PhiloxUniform(uint64_t seed, uint64_t step) {
  const PhiloxCounter out =
      Philox4x32({static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), 0u, 0u},
                 {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  const uint64_t bits = (static_cast<uint64_t>(out[0]) << 32) | out[1];
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

}  // namespace tokenmill

#undef TM_PHILOX_HD
