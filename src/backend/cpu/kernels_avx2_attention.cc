// AVX2 + FMA + F16C kernels for attention tiles and activations (see kernels_avx2.cc for
// why everything sits inside the target region with internal linkage).
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

inline const void* KvRow(const void* base, int64_t element_offset, DType dtype) {
  const size_t bytes = dtype == DType::kF32 ? 4 : 2;
  return static_cast<const uint8_t*>(base) + element_offset * bytes;
}

// Four query rows share each key load; the key row stays in L1 for the next group.
template <DType D>
void ScoresTyped(const float* q, int64_t ldq, int rows, const void* keys, int64_t key_stride,
                 int tokens, int head_dim, float* s, int64_t lds) {
  for (int t = 0; t < tokens; ++t) {
    const void* key = KvRow(keys, t * key_stride, D);
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
      const float* q0 = q + r * ldq;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int d = 0; d < head_dim; d += 8) {
        const __m256 k = Weights<D>::Load(key, d);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d), k, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + ldq + d), k, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + 2 * ldq + d), k, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + 3 * ldq + d), k, a3);
      }
      s[r * lds + t] = Hsum(a0);
      s[(r + 1) * lds + t] = Hsum(a1);
      s[(r + 2) * lds + t] = Hsum(a2);
      s[(r + 3) * lds + t] = Hsum(a3);
    }
    for (; r < rows; ++r) {
      __m256 a = _mm256_setzero_ps();
      for (int d = 0; d < head_dim; d += 8) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + d), Weights<D>::Load(key, d), a);
      }
      s[r * lds + t] = Hsum(a);
    }
  }
}

// o[r, d0:d0+8*NV] for R rows kept in registers across all tokens.
template <DType D, int R, int NV>
void ValuesTile(const float* p, int64_t ldp, const void* values, int64_t value_stride, int tokens,
                int d0, float* o, int64_t ldo) {
  __m256 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_loadu_ps(o + r * ldo + d0 + 8 * v);
  for (int t = 0; t < tokens; ++t) {
    const void* value = KvRow(values, t * value_stride, D);
    __m256 vv[NV];
    for (int v = 0; v < NV; ++v) vv[v] = Weights<D>::Load(value, d0 + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 pr = _mm256_set1_ps(p[r * ldp + t]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(pr, vv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(o + r * ldo + d0 + 8 * v, acc[r][v]);
}

template <DType D, int R>
void ValuesRows(const float* p, int64_t ldp, const void* values, int64_t value_stride, int tokens,
                int head_dim, float* o, int64_t ldo) {
  int d0 = 0;
  for (; d0 + 32 <= head_dim; d0 += 32) {
    ValuesTile<D, R, 4>(p, ldp, values, value_stride, tokens, d0, o, ldo);
  }
  for (; d0 < head_dim; d0 += 8) {
    ValuesTile<D, R, 1>(p, ldp, values, value_stride, tokens, d0, o, ldo);
  }
}

template <DType D>
void ValuesTyped(const float* p, int64_t ldp, int rows, const void* values, int64_t value_stride,
                 int tokens, int head_dim, float* o, int64_t ldo) {
  int r = 0;
  for (; r + 2 <= rows; r += 2) {
    ValuesRows<D, 2>(p + r * ldp, ldp, values, value_stride, tokens, head_dim, o + r * ldo, ldo);
  }
  if (r < rows) {
    ValuesRows<D, 1>(p + r * ldp, ldp, values, value_stride, tokens, head_dim, o + r * ldo, ldo);
  }
}

void AttnScores(const float* q, int64_t ldq, int rows, const void* keys, int64_t key_stride,
                int tokens, int head_dim, DType kv_dtype, float* s, int64_t lds) {
  if (head_dim % 8 != 0) {
    return GenericKernels().attn_scores(q, ldq, rows, keys, key_stride, tokens, head_dim, kv_dtype,
                                        s, lds);
  }
  switch (kv_dtype) {
    case DType::kF16:
      return ScoresTyped<DType::kF16>(q, ldq, rows, keys, key_stride, tokens, head_dim, s, lds);
    case DType::kBF16:
      return ScoresTyped<DType::kBF16>(q, ldq, rows, keys, key_stride, tokens, head_dim, s, lds);
    default:
      return ScoresTyped<DType::kF32>(q, ldq, rows, keys, key_stride, tokens, head_dim, s, lds);
  }
}

void AttnValues(const float* p, int64_t ldp, int rows, const void* values, int64_t value_stride,
                int tokens, int head_dim, DType kv_dtype, float* o, int64_t ldo) {
  if (head_dim % 8 != 0) {
    return GenericKernels().attn_values(p, ldp, rows, values, value_stride, tokens, head_dim,
                                        kv_dtype, o, ldo);
  }
  switch (kv_dtype) {
    case DType::kF16:
      return ValuesTyped<DType::kF16>(p, ldp, rows, values, value_stride, tokens, head_dim, o, ldo);
    case DType::kBF16:
      return ValuesTyped<DType::kBF16>(p, ldp, rows, values, value_stride, tokens, head_dim, o,
                                       ldo);
    default:
      return ValuesTyped<DType::kF32>(p, ldp, rows, values, value_stride, tokens, head_dim, o, ldo);
  }
}

float ExpShifted(const float* s, float max, int n, float* p) {
  const __m256 m = _mm256_set1_ps(max);
  __m256 sum = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(s + i), m));
    _mm256_storeu_ps(p + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {
    alignas(32) float tail[8] = {};
    for (int j = 0; i + j < n; ++j) tail[j] = s[i + j];
    // Lanes past n must add nothing: exp(-inf) is clamped, so mask them out explicitly.
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), lane));
    const __m256 e = _mm256_and_ps(Exp(_mm256_sub_ps(_mm256_load_ps(tail), m)), valid);
    _mm256_store_ps(tail, e);
    for (int j = 0; i + j < n; ++j) p[i + j] = tail[j];
    sum = _mm256_add_ps(sum, e);
  }
  return Hsum(sum);
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(
        out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    alignas(32) float g[8] = {}, u[8] = {}, r[8];
    for (int64_t j = 0; i + j < n; ++j) {
      g[j] = gate[i + j];
      u[j] = up[i + j];
    }
    const __m256 gv = _mm256_load_ps(g);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_store_ps(r, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_load_ps(u)));
    for (int64_t j = 0; i + j < n; ++j) out[i + j] = r[j];
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

// Called by Avx2Kernels() after it has checked the CPU.
void FillAvx2AttentionKernels(KernelTable* table) {
  table->attn_scores = AttnScores;
  table->attn_values = AttnValues;
  table->exp_shifted = ExpShifted;
  table->silu_mul = SiluMul;
}

}  // namespace tokenmill::cpu

#endif  // TM_CPU_AVX2_KERNELS
