// Helpers shared by the AVX2 kernel files. Include only inside an AVX2+FMA+F16C target
// region (after the target pragma of kernels_avx2*.cc): everything here is internal
// linkage and compiled for those extensions.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

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
    case DType::kF32:
      return static_cast<size_t>(k) * 4;
    case DType::kQ8_0:
      return static_cast<size_t>(k / kQ8_0BlockElems) * kQ8_0BlockBytes;
    default:
      return static_cast<size_t>(k) * 2;
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
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs))));
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

inline void Transpose8x8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Packs weight rows [n0, n0 + cols) x columns [k0, k0 + kc) into packed[kc][kNr] as f32
// (see KernelTable::pack_panel), converting and transposing 8x8 tiles: each weight
// element is converted exactly once.
template <DType D, int kNr>
void PackTyped(const void* w, int64_t k, int64_t n0, int cols, int64_t k0, int64_t kc,
               float* packed) {
  const size_t row_bytes = RowBytes(D, k);
  for (int j0 = 0; j0 < kNr; j0 += 8) {
    const void* rows[8];
    for (int r = 0; r < 8; ++r) {
      rows[r] =
          j0 + r < cols ? static_cast<const uint8_t*>(w) + (n0 + j0 + r) * row_bytes : nullptr;
    }
    int64_t i = 0;
    for (; i + 8 <= kc; i += 8) {
      __m256 v[8];
      for (int r = 0; r < 8; ++r) {
        v[r] = rows[r] != nullptr ? Weights<D>::Load(rows[r], k0 + i) : _mm256_setzero_ps();
      }
      Transpose8x8(v);
      for (int r = 0; r < 8; ++r) _mm256_storeu_ps(packed + (i + r) * kNr + j0, v[r]);
    }
    for (; i < kc; ++i) {
      for (int r = 0; r < 8; ++r) {
        packed[i * kNr + j0 + r] = rows[r] != nullptr ? Weights<D>::Scalar(rows[r], k0 + i) : 0.0f;
      }
    }
  }
}

// GEMV driver shared by the AVX2 and AVX-512 kernels. Dot::Run(rows, row, x, ldx, k, sums,
// prefetch) dots one weight row (its first k elements from `row`) with `rows` activation
// rows, and prefetches the bytes at `prefetch` as far as it reads from `row`.
//
// While the activations fit in L1 next to the weight stream, weight rows go one after
// the other and the prefetch runs kGemvPrefetchBytes ahead in the same stream. Beyond
// that (3+ rows of 4096) every weight row would re-read x from L2, which streamed at 60%
// of the rate: K is then cut into blocks whose slice of x stays in L1, a group of weight
// rows is swept block by block, and each piece prefetches the piece visited two later.
inline constexpr int64_t kGemvPrefetchBytes = 8192;
inline constexpr int64_t kGemvL1Bytes = 24 << 10;  // for x; the rest of L1 streams weights
inline constexpr int64_t kGemvGroupRows = 64;

// Calls f(std::integral_constant<int, R>{}) with R = rows (1..kGemvMaxRows; larger counts
// as kGemvMaxRows): turns a decode batch size into a kernel's template argument.
template <typename F>
inline void WithGemvRows(int rows, F&& f) {
  switch (rows) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    default:
      return f(std::integral_constant<int, 8>{});
  }
}

// Dot may also provide RunPair(rows, row, row_bytes, x, ldx, k, sums0, sums1, prefetch0,
// prefetch1): two consecutive weight rows against the same activation rows, so each
// activation load feeds two FMAs. From kGemvPairMinRows activation rows up, loading x
// (from L1/L2) costs more than streaming the weights, and the pair halves those loads.
inline constexpr int kGemvPairMinRows = 3;

template <typename Dot>
concept GemvPairDot = requires(const uint8_t* p, const float* x, float* s) {
  Dot::RunPair(1, p, size_t{0}, x, int64_t{0}, int64_t{0}, s, s, p, p);
};

template <DType D, typename Dot>
void GemvRows(const GemvArgs& a, int64_t n_begin, int64_t n_end) {
  const size_t row_bytes = RowBytes(D, a.k);
  const uint8_t* w = static_cast<const uint8_t*>(a.w);
  const int64_t x_bytes = static_cast<int64_t>(a.rows) * a.k * 4;
  // One or two rows of x stream from L2 fast enough (measured: blocking them costs more
  // in broken weight streams than it saves). Q8_0 blocks must not straddle a K block:
  // multiples of 64 elements suit every dtype.
  const int64_t kb =
      a.rows <= 2 || x_bytes <= kGemvL1Bytes
          ? a.k
          : (kGemvL1Bytes / (4 * a.rows) / 64 > 0 ? kGemvL1Bytes / (4 * a.rows) / 64 * 64 : 64);
  bool pairs = false;
  if constexpr (GemvPairDot<Dot>) pairs = a.rows >= kGemvPairMinRows;
  float sums[kGemvGroupRows][kGemvMaxRows];
  for (int64_t j0 = n_begin; j0 < n_end; j0 += kGemvGroupRows) {
    const int64_t j1 = j0 + kGemvGroupRows < n_end ? j0 + kGemvGroupRows : n_end;
    for (int64_t k0 = 0; k0 < a.k; k0 += kb) {
      const int64_t kc = a.k - k0 < kb ? a.k - k0 : kb;
      const size_t offset = RowBytes(D, k0);
      // The bytes to prefetch while reading row j's piece of this K block.
      auto ahead_of = [&](int64_t j) -> const uint8_t* {
        const uint8_t* piece = w + j * row_bytes + offset;
        if (kb == a.k) return piece + kGemvPrefetchBytes;
        if (j + 2 < j1) return piece + 2 * row_bytes;
        if (k0 + kb < a.k) {  // first rows of the group, next block
          return w + (j0 + (j + 2 - j1)) * row_bytes + RowBytes(D, k0 + kb);
        }
        return w + (j + 2 < n_end ? j + 2 : j) * row_bytes;  // next group's first block
      };
      auto add = [&](int64_t j, const float* part) {
        for (int r = 0; r < a.rows; ++r) {
          sums[j - j0][r] = k0 == 0 ? part[r] : sums[j - j0][r] + part[r];
        }
      };
      int64_t j = j0;
      if constexpr (GemvPairDot<Dot>) {
        for (; pairs && j + 1 < j1; j += 2) {
          float part0[kGemvMaxRows], part1[kGemvMaxRows];
          Dot::RunPair(a.rows, w + j * row_bytes + offset, row_bytes, a.x + k0, a.ldx, kc, part0,
                       part1, ahead_of(j), ahead_of(j + 1));
          add(j, part0);
          add(j + 1, part1);
        }
      }
      for (; j < j1; ++j) {
        float part[kGemvMaxRows];
        Dot::Run(a.rows, w + j * row_bytes + offset, a.x + k0, a.ldx, kc, part, ahead_of(j));
        add(j, part);
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      const float bias = a.bias != nullptr ? a.bias[j] : 0.0f;
      for (int r = 0; r < a.rows; ++r) a.out[r * a.ldo + j] = sums[j - j0][r] + bias;
    }
  }
}

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
  const __m256i pow2 =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(pow2));
}

}  // namespace
}  // namespace tokenmill::cpu
