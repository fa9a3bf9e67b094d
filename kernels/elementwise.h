// Launchers for the row-wise and element-wise ops: embedding gather, RMSNorm (plain and
// fused with the residual add), SiLU-and-multiply, row gather, dtype conversion, Q8_0
// dequantization and bias add. See types.h for the conventions every launcher follows.
//
// Tensors are dense and row-major. Activation types are kF32 or kBF16 (kF16 also works
// for these ops). Accumulation is always in fp32.
#pragma once

#include "kernels/types.h"

namespace tokenmill::kernels {

// out[t, :] = table[ids[t], :] for t < num_tokens. Rows whose id is outside [0, vocab)
// are written as zeros (the caller validates ids; this only keeps memory safe).
cudaError_t LaunchEmbedding(const void* table, ScalarType table_type, int64_t vocab,
                            int64_t hidden, const int32_t* ids, int64_t num_tokens, void* out,
                            ScalarType out_type, cudaStream_t stream);

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight. x and out share `type`
// and may alias. weight is fp32 [cols].
cudaError_t LaunchRmsNorm(const void* x, const float* weight, void* out, ScalarType type,
                          int64_t rows, int64_t cols, float eps, cudaStream_t stream);

// residual += delta (rounded to `type`); out = RmsNorm(residual) over the rounded values.
// residual, delta and out share `type`; out must not alias residual or delta.
cudaError_t LaunchAddRmsNorm(void* residual, const void* delta, const float* weight, void* out,
                             ScalarType type, int64_t rows, int64_t cols, float eps,
                             cudaStream_t stream);

// out = silu(gate) * up, element-wise over rows * cols elements of `type`.
cudaError_t LaunchSiluMul(const void* gate, const void* up, void* out, ScalarType type,
                          int64_t num_elements, cudaStream_t stream);

// dst[i, :] = src[rows[i], :] for i < num_rows; each row is row_bytes bytes.
cudaError_t LaunchGatherRows(const void* src, int64_t row_bytes, const int32_t* rows,
                             int64_t num_rows, void* dst, cudaStream_t stream);

// dst[i] = (dst_type) src[i] for i < n (round to nearest even).
cudaError_t LaunchConvert(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                          int64_t n, cudaStream_t stream);

// Dequantizes GGUF Q8_0 blocks (fp16 scale + 32 int8, 34 bytes each) holding n elements
// (n % 32 == 0) into dst of dst_type.
cudaError_t LaunchDequantizeQ8_0(const void* blocks, int64_t n, void* dst, ScalarType dst_type,
                                 cudaStream_t stream);

// Copies whole blocks within `num_planes` planes (a plane: one layer's K or V cache) at
// base + p * plane_bytes: for each copy c, block pairs[2c] -> block pairs[2c + 1], each
// block_bytes long. Requires: no destination block is also a source.
cudaError_t LaunchCopyBlocks(void* base, int64_t plane_bytes, int num_planes, int64_t block_bytes,
                             const int32_t* pairs, int num_copies, cudaStream_t stream);

// out[r, c] += bias[c] for a [rows, cols] tensor of `type`; bias is fp32.
cudaError_t LaunchAddBias(void* out, ScalarType type, const float* bias, int64_t rows,
                          int64_t cols, cudaStream_t stream);

}  // namespace tokenmill::kernels
