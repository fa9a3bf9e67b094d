// AVX2 + FMA + F16C kernels for weights: conversion, GEMV and the GEMM micro-kernel.
// Everything inside the target pragma is compiled for those extensions only and has
// internal linkage (avx2_util.h is included inside it on purpose); it calls no inline
// function of a shared header, so no AVX2 copy of one can leak into generic code through
// the linker. Avx2Kernels() (outside the region) checks the CPU before handing the table out.
#include <cpuid.h>
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"

#ifdef TM_CPU_AVX2_KERNELS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include "backend/cpu/avx2_util.h"

namespace tokenmill::cpu {
namespace {

constexpr int kMr = 6;
constexpr int kNr = 16;

template <DType D>
void ConvertTyped(const void* row, int64_t k0, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, Weights<D>::Load(row, k0 + i));
  for (; i < n; ++i) out[i] = Weights<D>::Scalar(row, k0 + i);
}

void ConvertRow(DType dtype, const void* row, int64_t k0, int64_t n, float* out) {
  switch (dtype) {
    case DType::kF32:
      return ConvertTyped<DType::kF32>(row, k0, n, out);
    case DType::kF16:
      return ConvertTyped<DType::kF16>(row, k0, n, out);
    case DType::kBF16:
      return ConvertTyped<DType::kBF16>(row, k0, n, out);
    case DType::kQ8_0:
      return ConvertTyped<DType::kQ8_0>(row, k0, n, out);
    default:
      return;
  }
}

// --- GEMV: one weight row against R activation rows, U independent accumulators -------

template <DType D, int R, int U>
void DotRow(const uint8_t* row, const float* x, int64_t ldx, int64_t k, float* sums,
            const uint8_t* prefetch) {
  constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
  __m256 acc[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) acc[r][u] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 * U <= k; i += 8 * U) {
    if (8 * U * kElemBytes >= 64 || (i * kElemBytes) % 64 == 0) {
      for (int64_t p = 0; p < 8 * U * kElemBytes; p += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(prefetch) + i * kElemBytes + p, _MM_HINT_T0);
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m256 w = Weights<D>::Load(row, i + 8 * u);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[r][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * ldx + i + 8 * u), acc[r][u]);
      }
    }
  }
  for (; i + 8 <= k; i += 8) {
    const __m256 w = Weights<D>::Load(row, i);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * ldx + i), acc[r][0]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m256 s = acc[r][0];
    for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[r][u]);
    float sum = Hsum(s);
    for (int64_t t = i; t < k; ++t) sum += Weights<D>::Scalar(row, t) * x[r * ldx + t];
    sums[r] = sum;
  }
}

// Q8_0: the block's dot product is formed in f32 from the int8 values and scaled once.
// Up to four rows, two blocks alternate between accumulators to hide the FMA latency;
// beyond, the rows themselves are enough independent chains (and registers are short).
template <int R>
inline void DotQ8Block(const uint8_t* block, const float* x, int64_t ldx, __m256* acc) {
  const __m256 d = _mm256_set1_ps(Q8Scale(block));
  const __m256 w0 = LoadQ8(block + 2), w1 = LoadQ8(block + 10);
  const __m256 w2 = LoadQ8(block + 18), w3 = LoadQ8(block + 26);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const float* xr = x + r * ldx;
    __m256 p = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));
    p = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), p);
    p = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), p);
    p = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), p);
    acc[r] = _mm256_fmadd_ps(p, d, acc[r]);
  }
}

template <int R>
void DotRowQ8(const uint8_t* row, const float* x, int64_t ldx, int64_t k, float* sums,
              const uint8_t* prefetch) {
  constexpr int kSets = R <= 4 ? 2 : 1;
  const int64_t nb = k / kQ8_0BlockElems;
  __m256 acc[kSets][R];
  for (int s = 0; s < kSets; ++s)
    for (int r = 0; r < R; ++r) acc[s][r] = _mm256_setzero_ps();
  const char* pf = reinterpret_cast<const char*>(prefetch);
  int64_t b = 0;
  if constexpr (kSets == 2) {
    for (; b + 2 <= nb; b += 2) {
      _mm_prefetch(pf + b * kQ8_0BlockBytes, _MM_HINT_T0);
      _mm_prefetch(pf + b * kQ8_0BlockBytes + 64, _MM_HINT_T0);
      DotQ8Block<R>(row + b * kQ8_0BlockBytes, x + b * kQ8_0BlockElems, ldx, acc[0]);
      DotQ8Block<R>(row + (b + 1) * kQ8_0BlockBytes, x + (b + 1) * kQ8_0BlockElems, ldx,
                    acc[kSets - 1]);
    }
  }
  for (; b < nb; ++b) {
    _mm_prefetch(pf + b * kQ8_0BlockBytes, _MM_HINT_T0);
    DotQ8Block<R>(row + b * kQ8_0BlockBytes, x + b * kQ8_0BlockElems, ldx, acc[0]);
  }
  for (int r = 0; r < R; ++r) {
    sums[r] = Hsum(kSets == 2 ? _mm256_add_ps(acc[0][r], acc[kSets - 1][r]) : acc[0][r]);
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

// --- GEMM: panel packing and the 6x16 micro-kernel --------------------------------------

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

// AVX2 lane mask selecting the first n (0..8) of 8 floats.
inline __m256i LaneMask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Edge tiles (cols < 16) use masked loads and stores of c; the k loop is the same. (An
// edge buffer that c may alias made GCC keep the accumulators in memory.)
template <int R>
void MicroKernel(int cols, int64_t kc, const float* x, int64_t ldx, const float* packed, float* c,
                 int64_t ldc, bool accumulate) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) {
    if (accumulate) {
      acc[r][0] = _mm256_maskload_ps(c + r * ldc, LaneMask(cols < 8 ? cols : 8));
      acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, LaneMask(cols > 8 ? cols - 8 : 0));
    } else {
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    }
  }
  const float* xk = x;
  for (int64_t k = 0; k < kc; ++k, ++xk) {
    const __m256 b0 = _mm256_loadu_ps(packed + k * kNr);
    const __m256 b1 = _mm256_loadu_ps(packed + k * kNr + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_set1_ps(xk[r * ldx]);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_maskstore_ps(c + r * ldc, LaneMask(cols < 8 ? cols : 8), acc[r][0]);
    _mm256_maskstore_ps(c + r * ldc + 8, LaneMask(cols > 8 ? cols - 8 : 0), acc[r][1]);
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
    default:
      return MicroKernel<6>(cols, kc, x, ldx, packed, c, ldc, accumulate);
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

// Defined in kernels_avx2_attention.cc.
void FillAvx2AttentionKernels(KernelTable* table);

namespace {

// CPUID leaf 1, ECX bit 29. Not __builtin_cpu_supports("f16c"): clang before 16 rejects
// that feature name, which broke every clang build (the fuzz and sanitizer builds).
bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

}  // namespace

const KernelTable* Avx2Kernels() {
  static const KernelTable* const table = []() -> const KernelTable* {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !CpuHasF16c()) {
      return nullptr;
    }
    static KernelTable t = GenericKernels();
    t.name = "avx2";
    t.gemm_mr = kMr;
    t.gemm_nr = kNr;
    t.convert_row = ConvertRow;
    t.gemv = Gemv;
    t.pack_panel = PackPanel;
    t.gemm_micro = GemmMicro;
    FillAvx2AttentionKernels(&t);
    return &t;
  }();
  return table;
}

}  // namespace tokenmill::cpu

#else  // !TM_CPU_AVX2_KERNELS

namespace tokenmill::cpu {
const KernelTable* Avx2Kernels() { return nullptr; }
}  // namespace tokenmill::cpu

#endif
