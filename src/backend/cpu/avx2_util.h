// Helpers shared by the AVX2 kernel files. Include only inside an AVX2+FMA+F16C target
// region (after the target pragma of kernels_avx2*.cc): everything here is internal
// linkage and compiled for those extensions.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace tokenmill::cpu {
namespace {

inline float Hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }

inline size_t RowBytes(DType d, int64_t k) {
  switch (d) {
    case DType::kF32: return static_cast<size_t>(k) * 4;
    case DType::kQ8_0: return static_cast<size_t>(k / kQ8_0BlockElems) * kQ8_0BlockBytes;
    default: return static_cast<size_t>(k) * 2;
  }
}

// Loads 8 consecutive weights of a row, starting at element k, as f32.
template <DType D>
struct Weights;

template <>
struct Weights<DType::kF32> {
  static __m256 Load(const void* row, int64_t k) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + k);
  }
  static float Scalar(const void* row, int64_t k) { return static_cast<const float*>(row)[k]; }
};

template <>
struct Weights<DType::kF16> {
  static __m256 Load(const void* row, int64_t k) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static float Scalar(const void* row, int64_t k) {
    return HalfToFloat(static_cast<const uint16_t*>(row)[k]);
  }
};

template <>
struct Weights<DType::kBF16> {
  static __m256 Load(const void* row, int64_t k) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float Scalar(const void* row, int64_t k) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(row)[k]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

inline __m256 LoadQ8(const uint8_t* qs) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs))));
}

inline float Q8Scale(const uint8_t* block) {
  uint16_t d;
  std::memcpy(&d, block, 2);
  return HalfToFloat(d);
}

template <>
struct Weights<DType::kQ8_0> {
  // k % 8 == 0, so the 8 values lie in one block.
  static __m256 Load(const void* row, int64_t k) {
    const uint8_t* block =
        static_cast<const uint8_t*>(row) + (k / kQ8_0BlockElems) * kQ8_0BlockBytes;
    return _mm256_mul_ps(_mm256_set1_ps(Q8Scale(block)), LoadQ8(block + 2 + k % kQ8_0BlockElems));
  }
  static float Scalar(const void* row, int64_t k) {
    const uint8_t* block =
        static_cast<const uint8_t*>(row) + (k / kQ8_0BlockElems) * kQ8_0BlockBytes;
    return Q8Scale(block) * static_cast<float>(static_cast<int8_t>(block[2 + k % kQ8_0BlockElems]));
  }
};

// exp(x) with ~2 ulp error (Cephes expf). Inputs are clamped to [-87.3, 88], so the
// result is always a normal float: exp of anything below -87.3 reads as 1.2e-38.
inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 fx = _mm256_floor_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i pow2 = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(pow2));
}

}  // namespace
}  // namespace tokenmill::cpu
