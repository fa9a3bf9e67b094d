// Inner loops of the CPU backend, one table per instruction set. The drivers (matmul.cc,
// attention.cc, ...) own blocking, threading and validation and call these on tiles;
// kernels_generic.cc is portable C++, kernels_avx2.cc uses AVX2+FMA+F16C.
//
// All pointers are host memory; strides are in elements. Weight rows are row-major
// [N, K] in their stored dtype; Q8_0 offsets and lengths along K are multiples of 32.
#pragma once

#include <cstdint>

#include "tokenmill/core/dtype.h"

// The AVX2 kernel files compile to real kernels only for x86-64 with GCC or Clang.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TM_CPU_AVX2_KERNELS 1
#endif

namespace tokenmill::cpu {

// Columns of out (weight rows) one GEMM task packs at a time; a multiple of every
// table's gemm_nr.
inline constexpr int kGemmPanelCols = 64;
// Activation rows one GEMV pass serves with each weight load (the whole decode batch).
inline constexpr int kGemvMaxRows = 8;
// Largest head_dim the attention kernels accept.
inline constexpr int kMaxHeadDim = 512;

struct GemvArgs {
  DType dtype;
  const void* w;  // [N, K]
  int64_t k;
  const float* x;  // [rows, k], row stride ldx
  int64_t ldx;
  int rows;    // 1..kGemvMaxRows
  float* out;  // [rows, N], row stride ldo
  int64_t ldo;
  const float* bias;  // [N] or null
};

struct KernelTable {
  const char* name;
  // Register tile of gemm_micro: gemm_mr rows of x times gemm_nr weight rows.
  int gemm_mr;
  int gemm_nr;

  // out[0, n) = row[k0, k0 + n) converted to f32. `row` is the start of a weight row.
  void (*convert_row)(DType dtype, const void* row, int64_t k0, int64_t n, float* out);

  // out[r, j] = dot(x[r], w[j]) (+ bias[j]) for r < rows, j in [n_begin, n_end).
  void (*gemv)(const GemvArgs& args, int64_t n_begin, int64_t n_end);

  // Packs weight rows [n0, n0 + cols) (cols <= gemm_nr), columns [k0, k0 + kc), as f32
  // into packed[kc][gemm_nr], k-major; rows past `cols` are zero.
  void (*pack_panel)(DType dtype, const void* w, int64_t k, int64_t n0, int cols, int64_t k0,
                     int64_t kc, float* packed);

  // c[r, j] (+)= sum_k x[r, k] * packed[k, j] for r < rows (<= gemm_mr), j < cols
  // (<= gemm_nr). accumulate == false overwrites c. Each c element is reduced in k order.
  void (*gemm_micro)(int rows, int cols, int64_t kc, const float* x, int64_t ldx,
                     const float* packed, float* c, int64_t ldc, bool accumulate);

  // s[r * lds + t] = dot(q[r * ldq ...], key_t) for r < rows, t < tokens, where key_t
  // is the head_dim-long K row at keys + t * key_stride (kv dtype F32/F16/BF16).
  void (*attn_scores)(const float* q, int64_t ldq, int rows, const void* keys, int64_t key_stride,
                      int tokens, int head_dim, DType kv_dtype, float* s, int64_t lds);

  // o[r * ldo ...] += sum_t p[r * ldp + t] * value_t for r < rows, t < tokens.
  void (*attn_values)(const float* p, int64_t ldp, int rows, const void* values,
                      int64_t value_stride, int tokens, int head_dim, DType kv_dtype, float* o,
                      int64_t ldo);

  // p[i] = exp(s[i] - max) for i < n; returns sum_i p[i] (fp32, fixed order).
  float (*exp_shifted)(const float* s, float max, int n, float* p);

  // out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]; out may alias gate or up.
  void (*silu_mul)(const float* gate, const float* up, int64_t n, float* out);
};

const KernelTable& GenericKernels();
// nullptr when this build or this CPU lacks AVX2, FMA and F16C.
const KernelTable* Avx2Kernels();
// nullptr when this build or this CPU lacks AVX-512 F/BW/VL/DQ (or AVX2, FMA, F16C).
const KernelTable* Avx512Kernels();

}  // namespace tokenmill::cpu
