// Row-wise ops: embedding, RMSNorm (+ residual), RoPE, SiLU-and-multiply. They are cheap
// next to the matmuls, so they use the pool only for large batches.
#include <cmath>
#include <cstring>

#include "backend/cpu/ops.h"

namespace tokenmill::cpu {
namespace {

// Elements below which an op runs on the calling thread.
constexpr int64_t kMinParallelElements = 1 << 16;

// Runs fn(row_begin, row_end) over [0, num_rows) in pieces of ~kMinParallelElements.
template <typename Fn>
void ForRows(CpuContext& ctx, int64_t num_rows, int64_t row_elements, Fn&& fn) {
  const int64_t rows_per_task =
      std::max<int64_t>(1, kMinParallelElements / std::max<int64_t>(1, row_elements));
  const int64_t num_tasks = (num_rows + rows_per_task - 1) / rows_per_task;
  ctx.pool->Run(num_tasks, [&](int64_t task, int) {
    fn(task * rows_per_task, std::min(num_rows, (task + 1) * rows_per_task));
  });
}

}  // namespace

void EmbeddingRows(CpuContext& ctx, DType table_dtype, const void* table, int64_t dim,
                   const int32_t* ids, int64_t num_rows, float* out) {
  const size_t row_bytes = DTypeBytes(table_dtype, dim);
  ForRows(ctx, num_rows, dim, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const void* row = static_cast<const uint8_t*>(table) + ids[t] * row_bytes;
      ctx.kernels->convert_row(table_dtype, row, 0, dim, out + t * dim);
    }
  });
}

void RmsNormRows(CpuContext& ctx, float* x, const float* residual_delta, DType weight_dtype,
                 const void* weight, float eps, int64_t num_rows, int64_t dim, float* out) {
  ForRows(ctx, num_rows, dim, [&](int64_t begin, int64_t end) {
    // Weights converted once per task; dims are at most a few thousand floats.
    std::vector<float> w(dim);
    ctx.kernels->convert_row(weight_dtype, weight, 0, dim, w.data());
    for (int64_t t = begin; t < end; ++t) {
      float* xr = x + t * dim;
      if (residual_delta != nullptr) {
        const float* dr = residual_delta + t * dim;
        for (int64_t i = 0; i < dim; ++i) xr[i] += dr[i];
      }
      // Double accumulation: the norm is exact to fp32 whatever the row length.
      double sum_sq = 0.0;
      for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
      const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
      float* orow = out + t * dim;
      for (int64_t i = 0; i < dim; ++i) orow[i] = xr[i] * inv_rms * w[i];
    }
  });
}

void RopeTable(const std::vector<float>& inv_freq, const int32_t* positions, int64_t num_rows,
               std::vector<float>* cos_sin) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  cos_sin->resize(num_rows * 2 * half);
  for (int64_t t = 0; t < num_rows; ++t) {
    float* c = cos_sin->data() + t * 2 * half;
    for (int64_t i = 0; i < half; ++i) {
      // The angle in double keeps long positions exact; HF's float angle differs by
      // at most a few ulp of cos/sin for positions in the tens of thousands.
      const double angle = static_cast<double>(positions[t]) * inv_freq[i];
      c[i] = static_cast<float>(std::cos(angle));
      c[half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

void RopeRows(CpuContext& ctx, float* x, int64_t num_rows, int num_heads, int head_dim,
              int rotary_dim, bool is_neox, const float* cos_sin) {
  const int half = rotary_dim / 2;
  const int64_t row_elems = static_cast<int64_t>(num_heads) * head_dim;
  ForRows(ctx, num_rows, row_elems, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* cs = cos_sin + t * 2 * half;
      const float* sn = cs + half;
      for (int h = 0; h < num_heads; ++h) {
        float* v = x + t * row_elems + static_cast<int64_t>(h) * head_dim;
        // neox pairs (i, i + half); interleaved pairs (2i, 2i + 1).
        const int stride = is_neox ? 1 : 2;
        const int offset = is_neox ? half : 1;
        for (int i = 0; i < half; ++i) {
          float& a = v[i * stride];
          float& b = v[i * stride + offset];
          const float x0 = a, x1 = b;
          a = x0 * cs[i] - x1 * sn[i];
          b = x1 * cs[i] + x0 * sn[i];
        }
      }
    }
  });
}

void SiluMulRows(CpuContext& ctx, const float* gate, const float* up, int64_t num_elements,
                 float* out) {
  constexpr int64_t kPiece = 1 << 14;
  ForRows(ctx, (num_elements + kPiece - 1) / kPiece, kPiece, [&](int64_t begin, int64_t end) {
    const int64_t e0 = begin * kPiece;
    const int64_t e1 = std::min(num_elements, end * kPiece);
    ctx.kernels->silu_mul(gate + e0, up + e0, e1 - e0, out + e0);
  });
}

}  // namespace tokenmill::cpu
