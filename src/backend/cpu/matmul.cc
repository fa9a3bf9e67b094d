// MatMul driver. Decode-sized batches (T <= kMaxGemvBatch) are a GEMV: memory-bound, so
// threads split N and each streams its own contiguous slice of the weights once. Larger
// batches use a blocked GEMM: each task owns an (MB rows x NB cols) tile of out, converts
// its weight panel to f32 once per KC slice and runs the register-tiled micro-kernel.
//
// Every output element is produced by one task with a fixed reduction order, so the
// result does not depend on the number of threads.
#include <algorithm>

#include "backend/cpu/ops.h"

namespace tokenmill::cpu {
namespace {

constexpr int64_t kMaxGemvBatch = 8;
// Weight rows per task are a multiple of this (whole K-blocked groups, see avx2_util.h).
constexpr int64_t kGemvRowBlock = 16;
constexpr int64_t kKc = 256;  // multiple of the Q8_0 block
constexpr int64_t kNb = kGemmPanelCols;
constexpr int64_t kMbMax = 144;  // rounded down to the table's gemm_mr
// Below this many weight elements a single thread is faster than waking the pool.
constexpr int64_t kMinParallelElements = 1 << 15;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void GemvRange(const KernelTable& kt, const MatMulArgs& a, int64_t n_begin, int64_t n_end) {
  for (int64_t r0 = 0; r0 < a.num_rows; r0 += kGemvMaxRows) {
    GemvArgs g;
    g.dtype = a.w_dtype;
    g.w = a.w;
    g.k = a.k;
    g.x = a.x + r0 * a.k;
    g.ldx = a.k;
    g.rows = static_cast<int>(std::min<int64_t>(kGemvMaxRows, a.num_rows - r0));
    g.out = a.out + r0 * a.n;
    g.ldo = a.n;
    g.bias = a.bias;
    kt.gemv(g, n_begin, n_end);
  }
}

void Gemv(CpuContext& ctx, const MatMulArgs& a) {
  const KernelTable& kt = *ctx.kernels;
  const int threads = ctx.pool->num_threads();
  if (threads == 1 || a.n * a.k < kMinParallelElements) {
    GemvRange(kt, a, 0, a.n);
    return;
  }
  // A few tasks per thread balance a core that is busy elsewhere; rows per task stay a
  // multiple of kGemvRowBlock so each task streams whole blocks.
  const int64_t num_tasks = std::min(CeilDiv(a.n, kGemvRowBlock), int64_t{threads} * 4);
  const int64_t rows_per_task = CeilDiv(CeilDiv(a.n, num_tasks), kGemvRowBlock) * kGemvRowBlock;
  ctx.pool->Run(CeilDiv(a.n, rows_per_task), [&](int64_t task, int) {
    const int64_t begin = task * rows_per_task;
    GemvRange(kt, a, begin, std::min(a.n, begin + rows_per_task));
  });
}

// One (m0, n0) tile: rows [m0, m0 + mb) of x against weight rows [n0, n0 + nb).
void GemmTile(const KernelTable& kt, const MatMulArgs& a, int64_t m0, int64_t mb, int64_t n0,
              int64_t nb, float* packed) {
  const int64_t nr = kt.gemm_nr, mr = kt.gemm_mr;
  const int64_t num_strips = CeilDiv(nb, nr);
  for (int64_t k0 = 0; k0 < a.k; k0 += kKc) {
    const int64_t kc = std::min(kKc, a.k - k0);
    for (int64_t s = 0; s < num_strips; ++s) {
      const int cols = static_cast<int>(std::min(nr, nb - s * nr));
      kt.pack_panel(a.w_dtype, a.w, a.k, n0 + s * nr, cols, k0, kc, packed + s * kKc * nr);
    }
    for (int64_t m = m0; m < m0 + mb; m += mr) {
      const int rows = static_cast<int>(std::min(mr, m0 + mb - m));
      for (int64_t s = 0; s < num_strips; ++s) {
        const int cols = static_cast<int>(std::min(nr, nb - s * nr));
        kt.gemm_micro(rows, cols, kc, a.x + m * a.k + k0, a.k, packed + s * kKc * nr,
                      a.out + m * a.n + n0 + s * nr, a.n, k0 > 0);
      }
    }
  }
  if (a.bias != nullptr) {
    for (int64_t m = m0; m < m0 + mb; ++m) {
      float* row = a.out + m * a.n + n0;
      for (int64_t j = 0; j < nb; ++j) row[j] += a.bias[n0 + j];
    }
  }
}

void Gemm(CpuContext& ctx, const MatMulArgs& a) {
  const KernelTable& kt = *ctx.kernels;
  // Split rows into near-equal blocks of at most kMbMax (rounded to the micro-kernel).
  const int64_t num_m_blocks = CeilDiv(a.num_rows, kMbMax);
  const int64_t mb = CeilDiv(CeilDiv(a.num_rows, num_m_blocks), kt.gemm_mr) * kt.gemm_mr;
  const int64_t num_n_blocks = CeilDiv(a.n, kNb);
  const int64_t num_tasks = CeilDiv(a.num_rows, mb) * num_n_blocks;
  ctx.pool->Run(num_tasks, [&](int64_t task, int thread) {
    const int64_t m0 = (task / num_n_blocks) * mb;
    const int64_t n0 = (task % num_n_blocks) * kNb;
    float* packed = ctx.Scratch(thread, kKc * kNb);
    GemmTile(kt, a, m0, std::min(mb, a.num_rows - m0), n0, std::min(kNb, a.n - n0), packed);
  });
}

}  // namespace

void MatMul(CpuContext& ctx, const MatMulArgs& args) {
  if (args.num_rows == 0 || args.n == 0) return;
  if (args.k == 0) {  // an empty sum: only the bias remains
    for (int64_t m = 0; m < args.num_rows; ++m)
      for (int64_t j = 0; j < args.n; ++j)
        args.out[m * args.n + j] = args.bias != nullptr ? args.bias[j] : 0.0f;
    return;
  }
  if (args.num_rows <= kMaxGemvBatch) {
    Gemv(ctx, args);
  } else {
    Gemm(ctx, args);
  }
}

}  // namespace tokenmill::cpu
