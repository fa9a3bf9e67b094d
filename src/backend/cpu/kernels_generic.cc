// Portable kernels: plain loops the compiler may vectorise for the baseline ISA. They are
// the fallback on CPUs without AVX2 and a second implementation the tests compare.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace tokenmill::cpu {
namespace {

// A 4x8 tile fits the 16 SSE registers of baseline x86-64 (and NEON's 32).
constexpr int kMr = 4;
constexpr int kNr = 8;

constexpr int kLanes = 8;  // independent partial sums: accuracy and vectorisability
constexpr int kChunk = 256;

void ConvertRow(DType dtype, const void* row, int64_t k0, int64_t n, float* out) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(row) + k0, n * sizeof(float));
      return;
    case DType::kF16: {
      const uint16_t* h = static_cast<const uint16_t*>(row) + k0;
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(h[i]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* h = static_cast<const uint16_t*>(row) + k0;
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(h[i]);
      return;
    }
    case DType::kQ8_0: {
      const uint8_t* blocks =
          static_cast<const uint8_t*>(row) + (k0 / kQ8_0BlockElems) * kQ8_0BlockBytes;
      for (int64_t b = 0; b * kQ8_0BlockElems < n; ++b) {
        const uint8_t* block = blocks + b * kQ8_0BlockBytes;
        uint16_t d_bits;
        std::memcpy(&d_bits, block, 2);
        const float d = F16ToF32(d_bits);
        const int8_t* qs = reinterpret_cast<const int8_t*>(block + 2);
        const int64_t m = std::min<int64_t>(kQ8_0BlockElems, n - b * kQ8_0BlockElems);
        for (int64_t i = 0; i < m; ++i) out[b * kQ8_0BlockElems + i] = d * qs[i];
      }
      return;
    }
    default:
      return;  // drivers validate dtypes before calling
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  }
  for (; i < n; ++i) lanes[i % kLanes] += a[i] * b[i];
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

void Gemv(const GemvArgs& a, int64_t n_begin, int64_t n_end) {
  const size_t row_bytes = DTypeBytes(a.dtype, a.k);
  float wbuf[kChunk];
  for (int64_t j = n_begin; j < n_end; ++j) {
    const void* row = static_cast<const uint8_t*>(a.w) + j * row_bytes;
    float sums[kGemvMaxRows] = {};
    for (int64_t k0 = 0; k0 < a.k; k0 += kChunk) {
      const int64_t n = std::min<int64_t>(kChunk, a.k - k0);
      ConvertRow(a.dtype, row, k0, n, wbuf);
      for (int r = 0; r < a.rows; ++r) sums[r] += Dot(wbuf, a.x + r * a.ldx + k0, n);
    }
    for (int r = 0; r < a.rows; ++r) {
      a.out[r * a.ldo + j] = sums[r] + (a.bias != nullptr ? a.bias[j] : 0.0f);
    }
  }
}

void PackPanel(DType dtype, const void* w, int64_t k, int64_t n0, int cols, int64_t k0, int64_t kc,
               float* packed) {
  const size_t row_bytes = DTypeBytes(dtype, k);
  float buf[kChunk];
  for (int j = 0; j < kNr; ++j) {
    if (j >= cols) {
      for (int64_t i = 0; i < kc; ++i) packed[i * kNr + j] = 0.0f;
      continue;
    }
    const void* row = static_cast<const uint8_t*>(w) + (n0 + j) * row_bytes;
    for (int64_t c = 0; c < kc; c += kChunk) {
      const int64_t n = std::min<int64_t>(kChunk, kc - c);
      ConvertRow(dtype, row, k0 + c, n, buf);
      for (int64_t i = 0; i < n; ++i) packed[(c + i) * kNr + j] = buf[i];
    }
  }
}

void GemmMicro(int rows, int cols, int64_t kc, const float* x, int64_t ldx, const float* packed,
               float* c, int64_t ldc, bool accumulate) {
  float acc[kMr][kNr] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = packed + k * kNr;
    for (int r = 0; r < rows; ++r) {
      const float xr = x[r * ldx + k];
      for (int j = 0; j < kNr; ++j) acc[r][j] += xr * b[j];
    }
  }
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < cols; ++j) {
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
    }
  }
}

// Converts one head_dim-long K or V row (F32/F16/BF16 cache) to f32.
inline const float* KvRow(const void* base, int64_t offset, int head_dim, DType dtype, float* buf) {
  if (dtype == DType::kF32) return static_cast<const float*>(base) + offset;
  ConvertRow(dtype, static_cast<const uint16_t*>(base) + offset, 0, head_dim, buf);
  return buf;
}

void AttnScores(const float* q, int64_t ldq, int rows, const void* keys, int64_t key_stride,
                int tokens, int head_dim, DType kv_dtype, float* s, int64_t lds) {
  float buf[kMaxHeadDim];
  for (int t = 0; t < tokens; ++t) {
    const float* key = KvRow(keys, t * key_stride, head_dim, kv_dtype, buf);
    for (int r = 0; r < rows; ++r) s[r * lds + t] = Dot(q + r * ldq, key, head_dim);
  }
}

void AttnValues(const float* p, int64_t ldp, int rows, const void* values, int64_t value_stride,
                int tokens, int head_dim, DType kv_dtype, float* o, int64_t ldo) {
  float buf[kMaxHeadDim];
  for (int t = 0; t < tokens; ++t) {
    const float* value = KvRow(values, t * value_stride, head_dim, kv_dtype, buf);
    for (int r = 0; r < rows; ++r) {
      const float pr = p[r * ldp + t];
      float* orow = o + r * ldo;
      for (int d = 0; d < head_dim; ++d) orow[d] += pr * value[d];
    }
  }
}

float ExpShifted(const float* s, float max, int n, float* p) {
  float lanes[kLanes] = {};
  for (int i = 0; i < n; ++i) {
    p[i] = std::exp(s[i] - max);
    lanes[i % kLanes] += p[i];
  }
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace

const KernelTable& GenericKernels() {
  static const KernelTable table = [] {
    KernelTable t;
    t.name = "generic";
    t.gemm_mr = kMr;
    t.gemm_nr = kNr;
    t.convert_row = ConvertRow;
    t.gemv = Gemv;
    t.pack_panel = PackPanel;
    t.gemm_micro = GemmMicro;
    t.attn_scores = AttnScores;
    t.attn_values = AttnValues;
    t.exp_shifted = ExpShifted;
    t.silu_mul = SiluMul;
    return t;
  }();
  return table;
}

}  // namespace tokenmill::cpu
