// AVX-512 (F/BW/VL/DQ) kernels for weights: GEMV and an 8x32 GEMM micro-kernel, twice the
// width of the AVX2 ones, so the FMA peak doubles on cores with 512-bit datapaths and
// the int8/half conversions of a GEMV cost half the instructions. Attention and
// activations stay on the AVX2 kernels. Same rules as kernels_avx2.cc: everything inside
// the target region has internal linkage; Avx512Kernels() checks the CPU first.

// GCC 12's AVX-512 headers build their "undefined" operands by self-initialisation, which
// -W(maybe-)uninitialized flags once the intrinsics are inlined (GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"

#ifdef TM_CPU_AVX2_KERNELS
#if defined(__clang__)
#pragma clang attribute push(                                                    \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

#include "backend/cpu/avx2_util.h"

namespace tokenmill::cpu {
namespace {

constexpr int kMr = 8;
constexpr int kNr = 32;

inline __mmask16 TailMask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

inline float Hsum16(__m512 v) {
  const __m256 hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2)));
  return Hsum(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}

// 16 consecutive weights of a row from element k as f32; Tail loads n < 16 (zero-filled).
template <DType D>
struct Weights16;

template <>
struct Weights16<DType::kF32> {
  static __m512 Load(const void* row, int64_t k) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + k);
  }
  static __m512 Tail(const void* row, int64_t k, int64_t n) {
    return _mm512_maskz_loadu_ps(TailMask(n), static_cast<const float*>(row) + k);
  }
};

template <>
struct Weights16<DType::kF16> {
  static __m512 Load(const void* row, int64_t k) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static __m512 Tail(const void* row, int64_t k, int64_t n) {
    return _mm512_cvtph_ps(
        _mm256_maskz_loadu_epi16(TailMask(n), static_cast<const uint16_t*>(row) + k));
  }
};

template <>
struct Weights16<DType::kBF16> {
  static __m512 Widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 Load(const void* row, int64_t k) {
    return Widen(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static __m512 Tail(const void* row, int64_t k, int64_t n) {
    return Widen(_mm256_maskz_loadu_epi16(TailMask(n), static_cast<const uint16_t*>(row) + k));
  }
};

inline __m512 LoadQ8x16(const uint8_t* qs) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs))));
}

// --- GEMV -----------------------------------------------------------------------------

// One weight row against R activation rows with U independent accumulators each.
template <DType D, int R, int U>
void DotRow(const uint8_t* row, const float* x, int64_t ldx, int64_t k, float* sums,
            const uint8_t* prefetch) {
  constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
  __m512 acc[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) acc[r][u] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 * U <= k; i += 16 * U) {
    for (int64_t p = 0; p < 16 * U * kElemBytes; p += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(prefetch) + i * kElemBytes + p, _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m512 w = Weights16<D>::Load(row, i + 16 * u);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[r][u] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + r * ldx + i + 16 * u), acc[r][u]);
      }
    }
  }
  for (; i < k; i += 16) {
    const int64_t n = k - i < 16 ? k - i : 16;
    const __m512 w = Weights16<D>::Tail(row, i, n);
    for (int r = 0; r < R; ++r) {
      acc[r][0] =
          _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(TailMask(n), x + r * ldx + i), acc[r][0]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m512 s = acc[r][0];
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[r][u]);
    sums[r] = Hsum16(s);
  }
}

// Q8_0: each block's dot product is formed in f32 from the int8 values and scaled once;
// two blocks alternate between accumulators to hide the FMA latency.
template <int R>
inline void DotQ8Block(const uint8_t* block, const float* x, int64_t ldx, __m512* acc) {
  const __m512 d = _mm512_set1_ps(Q8Scale(block));
  const __m512 w0 = LoadQ8x16(block + 2), w1 = LoadQ8x16(block + 18);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const float* xr = x + r * ldx;
    const __m512 p =
        _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr + 16), _mm512_mul_ps(w0, _mm512_loadu_ps(xr)));
    acc[r] = _mm512_fmadd_ps(p, d, acc[r]);
  }
}

template <int R>
void DotRowQ8(const uint8_t* row, const float* x, int64_t ldx, int64_t k, float* sums,
              const uint8_t* prefetch) {
  const int64_t nb = k / kQ8_0BlockElems;
  __m512 even[R], odd[R];
  for (int r = 0; r < R; ++r) even[r] = odd[r] = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const char* p = reinterpret_cast<const char*>(prefetch) + b * kQ8_0BlockBytes;
    _mm_prefetch(p, _MM_HINT_T0);
    _mm_prefetch(p + 64, _MM_HINT_T0);
    DotQ8Block<R>(row + b * kQ8_0BlockBytes, x + b * kQ8_0BlockElems, ldx, even);
    DotQ8Block<R>(row + (b + 1) * kQ8_0BlockBytes, x + (b + 1) * kQ8_0BlockElems, ldx, odd);
  }
  if (b < nb) DotQ8Block<R>(row + b * kQ8_0BlockBytes, x + b * kQ8_0BlockElems, ldx, even);
  for (int r = 0; r < R; ++r) sums[r] = Hsum16(_mm512_add_ps(even[r], odd[r]));
}

// Two consecutive weight rows (row0, row0 + row_bytes) against R activation rows: each x
// load feeds both rows' FMAs. U independent accumulators per (row, x row) pair; the same
// U as DotRow for the same R, so a pair gives the bits of two single rows.
template <DType D, int R, int U>
void DotRowPair(const uint8_t* row0, size_t row_bytes, const float* x, int64_t ldx, int64_t k,
                float* sums0, float* sums1, const uint8_t* prefetch0, const uint8_t* prefetch1) {
  constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
  const uint8_t* row1 = row0 + row_bytes;
  __m512 acc0[R][U], acc1[R][U];
  for (int r = 0; r < R; ++r) {
    for (int u = 0; u < U; ++u) acc0[r][u] = acc1[r][u] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 * U <= k; i += 16 * U) {
    for (int64_t p = 0; p < 16 * U * kElemBytes; p += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(prefetch0) + i * kElemBytes + p, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(prefetch1) + i * kElemBytes + p, _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m512 w0 = Weights16<D>::Load(row0, i + 16 * u);
      const __m512 w1 = Weights16<D>::Load(row1, i + 16 * u);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 xv = _mm512_loadu_ps(x + r * ldx + i + 16 * u);
        acc0[r][u] = _mm512_fmadd_ps(w0, xv, acc0[r][u]);
        acc1[r][u] = _mm512_fmadd_ps(w1, xv, acc1[r][u]);
      }
    }
  }
  for (; i < k; i += 16) {
    const int64_t n = k - i < 16 ? k - i : 16;
    const __m512 w0 = Weights16<D>::Tail(row0, i, n);
    const __m512 w1 = Weights16<D>::Tail(row1, i, n);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(TailMask(n), x + r * ldx + i);
      acc0[r][0] = _mm512_fmadd_ps(w0, xv, acc0[r][0]);
      acc1[r][0] = _mm512_fmadd_ps(w1, xv, acc1[r][0]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m512 s0 = acc0[r][0], s1 = acc1[r][0];
    for (int u = 1; u < U; ++u) {
      s0 = _mm512_add_ps(s0, acc0[r][u]);
      s1 = _mm512_add_ps(s1, acc1[r][u]);
    }
    sums0[r] = Hsum16(s0);
    sums1[r] = Hsum16(s1);
  }
}

// Q8_0, two weight rows: the blocks of both rows at the same K share the x loads.
template <int R>
void DotRowPairQ8(const uint8_t* row0, size_t row_bytes, const float* x, int64_t ldx, int64_t k,
                  float* sums0, float* sums1, const uint8_t* prefetch0,
                  const uint8_t* prefetch1) {
  const int64_t nb = k / kQ8_0BlockElems;
  const uint8_t* row1 = row0 + row_bytes;
  __m512 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t off = b * kQ8_0BlockBytes;
    if ((b & 1) == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(prefetch0) + off, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(prefetch0) + off + 64, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(prefetch1) + off, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(prefetch1) + off + 64, _MM_HINT_T0);
    }
    const __m512 d0 = _mm512_set1_ps(Q8Scale(row0 + off));
    const __m512 d1 = _mm512_set1_ps(Q8Scale(row1 + off));
    const __m512 w00 = LoadQ8x16(row0 + off + 2), w01 = LoadQ8x16(row0 + off + 18);
    const __m512 w10 = LoadQ8x16(row1 + off + 2), w11 = LoadQ8x16(row1 + off + 18);
    const float* xb = x + b * kQ8_0BlockElems;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 xa = _mm512_loadu_ps(xb + r * ldx);
      const __m512 xc = _mm512_loadu_ps(xb + r * ldx + 16);
      acc0[r] = _mm512_fmadd_ps(_mm512_fmadd_ps(w01, xc, _mm512_mul_ps(w00, xa)), d0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(_mm512_fmadd_ps(w11, xc, _mm512_mul_ps(w10, xa)), d1, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    sums0[r] = Hsum16(acc0[r]);
    sums1[r] = Hsum16(acc1[r]);
  }
}

template <DType D>
struct RowDot {
  template <int R>
  static void Typed(const uint8_t* row, const float* x, int64_t ldx, int64_t k, float* sums,
                    const uint8_t* prefetch) {
    if constexpr (D == DType::kQ8_0) {
      DotRowQ8<R>(row, x, ldx, k, sums, prefetch);
    } else {
      DotRow<D, R, (R <= 2 ? 4 : R <= 4 ? 2 : 1)>(row, x, ldx, k, sums, prefetch);
    }
  }
  template <int R>
  static void TypedPair(const uint8_t* row0, size_t row_bytes, const float* x, int64_t ldx,
                        int64_t k, float* sums0, float* sums1, const uint8_t* prefetch0,
                        const uint8_t* prefetch1) {
    if constexpr (D == DType::kQ8_0) {
      DotRowPairQ8<R>(row0, row_bytes, x, ldx, k, sums0, sums1, prefetch0, prefetch1);
    } else {
      DotRowPair<D, R, (R <= 2 ? 4 : R <= 4 ? 2 : 1)>(row0, row_bytes, x, ldx, k, sums0, sums1,
                                                      prefetch0, prefetch1);
    }
  }
  // GemvRows uses it from kGemvPairMinRows (3) activation rows up.
  static void RunPair(int rows, const uint8_t* row0, size_t row_bytes, const float* x, int64_t ldx,
                      int64_t k, float* sums0, float* sums1, const uint8_t* prefetch0,
                      const uint8_t* prefetch1) {
    WithGemvRows(rows, [&](auto r) {
      TypedPair<decltype(r)::value>(row0, row_bytes, x, ldx, k, sums0, sums1, prefetch0, prefetch1);
    });
  }
  static void Run(int rows, const uint8_t* row, const float* x, int64_t ldx, int64_t k, float* sums,
                  const uint8_t* prefetch) {
    WithGemvRows(rows, [&](auto r) { Typed<decltype(r)::value>(row, x, ldx, k, sums, prefetch); });
  }
};

template <DType D>
void GemvTyped(const GemvArgs& a, int64_t n_begin, int64_t n_end) {
  GemvRows<D, RowDot<D>>(a, n_begin, n_end);
}

void Gemv(const GemvArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.dtype) {
    case DType::kF32:
      return GemvTyped<DType::kF32>(a, n_begin, n_end);
    case DType::kF16:
      return GemvTyped<DType::kF16>(a, n_begin, n_end);
    case DType::kBF16:
      return GemvTyped<DType::kBF16>(a, n_begin, n_end);
    case DType::kQ8_0:
      return GemvTyped<DType::kQ8_0>(a, n_begin, n_end);
    default:
      return;
  }
}

// --- GEMM -----------------------------------------------------------------------------

void PackPanel(DType dtype, const void* w, int64_t k, int64_t n0, int cols, int64_t k0, int64_t kc,
               float* packed) {
  switch (dtype) {
    case DType::kF32:
      return PackTyped<DType::kF32, kNr>(w, k, n0, cols, k0, kc, packed);
    case DType::kF16:
      return PackTyped<DType::kF16, kNr>(w, k, n0, cols, k0, kc, packed);
    case DType::kBF16:
      return PackTyped<DType::kBF16, kNr>(w, k, n0, cols, k0, kc, packed);
    case DType::kQ8_0:
      return PackTyped<DType::kQ8_0, kNr>(w, k, n0, cols, k0, kc, packed);
    default:
      return;
  }
}

// Edge tiles (cols < 32) use masked loads and stores of c; the k loop is the same.
template <int R>
void MicroKernel(int cols, int64_t kc, const float* x, int64_t ldx, const float* packed, float* c,
                 int64_t ldc, bool accumulate) {
  const __mmask16 m0 = cols >= 16 ? 0xffff : TailMask(cols);
  const __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? TailMask(cols - 16) : 0;
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) {
    acc[r][0] = accumulate ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
    acc[r][1] = accumulate ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(packed + k * kNr);
    const __m512 b1 = _mm512_loadu_ps(packed + k * kNr + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * ldx + k]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
  }
}

void GemmMicro(int rows, int cols, int64_t kc, const float* x, int64_t ldx, const float* packed,
               float* c, int64_t ldc, bool accumulate) {
  switch (rows) {
    case 1:
      return MicroKernel<1>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    case 2:
      return MicroKernel<2>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    case 3:
      return MicroKernel<3>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    case 4:
      return MicroKernel<4>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    case 5:
      return MicroKernel<5>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    case 6:
      return MicroKernel<6>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    case 7:
      return MicroKernel<7>(cols, kc, x, ldx, packed, c, ldc, accumulate);
    default:
      return MicroKernel<8>(cols, kc, x, ldx, packed, c, ldc, accumulate);
  }
}

}  // namespace
}  // namespace tokenmill::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace tokenmill::cpu {

const KernelTable* Avx512Kernels() {
  static const KernelTable* const table = []() -> const KernelTable* {
    const KernelTable* avx2 = Avx2Kernels();
    __builtin_cpu_init();
    if (avx2 == nullptr || !__builtin_cpu_supports("avx512f") ||
        !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl") ||
        !__builtin_cpu_supports("avx512dq")) {
      return nullptr;
    }
    static KernelTable t = *avx2;
    t.name = "avx512";
    t.gemm_mr = kMr;
    t.gemm_nr = kNr;
    t.gemv = Gemv;
    t.pack_panel = PackPanel;
    t.gemm_micro = GemmMicro;
    return &t;
  }();
  return table;
}

}  // namespace tokenmill::cpu

#else  // !TM_CPU_AVX2_KERNELS

namespace tokenmill::cpu {
const KernelTable* Avx512Kernels() { return nullptr; }
}  // namespace tokenmill::cpu

#endif
