// Kernel templates for elementwise.h. Instantiated in elementwise.cu.
#pragma once

#include "kernels/common.cuh"

namespace tokenmill::kernels {

// One block per token row; threads stride over N-element vectors of the row.
template <typename TT, typename TO, int N>
__global__ void EmbeddingKernel(const TT* __restrict__ table, int64_t vocab, int64_t hidden,
                                const int32_t* __restrict__ ids, TO* __restrict__ out) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  TO* dst = out + t * hidden;
  const int64_t num_vecs = hidden / N;
  if (id < 0 || id >= vocab) {
    for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
      Packed<TO, N> o;
#pragma unroll
      for (int j = 0; j < N; ++j) o.v[j] = FromFloat<TO>(0.0f);
      reinterpret_cast<Packed<TO, N>*>(dst)[i] = o;
    }
    return;
  }
  const TT* src = table + static_cast<int64_t>(id) * hidden;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Packed<TT, N> v = reinterpret_cast<const Packed<TT, N>*>(src)[i];
    Packed<TO, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = FromFloat<TO>(ToFloat(v.v[j]));
    reinterpret_cast<Packed<TO, N>*>(dst)[i] = o;
  }
}

// One block per row. The first pass reduces the sum of squares; the second re-reads the
// row (an L1/L2 hit for the rows of a model) to scale it.
template <typename T, int N>
__global__ void RmsNormKernel(const T* __restrict__ x, const float* __restrict__ weight,
                              T* out, int64_t cols, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const Packed<T, N>* xr = reinterpret_cast<const Packed<T, N>*>(x + row * cols);
  Packed<T, N>* outr = reinterpret_cast<Packed<T, N>*>(out + row * cols);
  const Packed<float, N>* w = reinterpret_cast<const Packed<float, N>*>(weight);
  const int64_t num_vecs = cols / N;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Packed<T, N> v = xr[i];
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float f = ToFloat(v.v[j]);
      ss += f * f;
    }
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Packed<T, N> v = xr[i];
    const Packed<float, N> wv = w[i];
    Packed<T, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = FromFloat<T>(ToFloat(v.v[j]) * inv * wv.v[j]);
    outr[i] = o;
  }
}

// residual += delta, then RMSNorm of the stored (rounded) residual. Each thread re-reads
// only the vectors it wrote itself, so no barrier is needed between the passes.
template <typename T, int N>
__global__ void AddRmsNormKernel(T* __restrict__ residual, const T* __restrict__ delta,
                                 const float* __restrict__ weight, T* __restrict__ out,
                                 int64_t cols, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  Packed<T, N>* rr = reinterpret_cast<Packed<T, N>*>(residual + row * cols);
  const Packed<T, N>* dr = reinterpret_cast<const Packed<T, N>*>(delta + row * cols);
  Packed<T, N>* outr = reinterpret_cast<Packed<T, N>*>(out + row * cols);
  const Packed<float, N>* w = reinterpret_cast<const Packed<float, N>*>(weight);
  const int64_t num_vecs = cols / N;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Packed<T, N> a = rr[i];
    const Packed<T, N> b = dr[i];
    Packed<T, N> s;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      s.v[j] = FromFloat<T>(ToFloat(a.v[j]) + ToFloat(b.v[j]));
      const float f = ToFloat(s.v[j]);
      ss += f * f;
    }
    rr[i] = s;
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Packed<T, N> v = rr[i];
    const Packed<float, N> wv = w[i];
    Packed<T, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = FromFloat<T>(ToFloat(v.v[j]) * inv * wv.v[j]);
    outr[i] = o;
  }
}

template <typename T, int N>
__global__ void SiluMulKernel(const T* __restrict__ gate, const T* __restrict__ up,
                              T* __restrict__ out, int64_t num_vecs) {
  const auto* g = reinterpret_cast<const Packed<T, N>*>(gate);
  const auto* u = reinterpret_cast<const Packed<T, N>*>(up);
  auto* o = reinterpret_cast<Packed<T, N>*>(out);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_vecs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Packed<T, N> gv = g[i], uv = u[i];
    Packed<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float x = ToFloat(gv.v[j]);
      r.v[j] = FromFloat<T>(x / (1.0f + __expf(-x)) * ToFloat(uv.v[j]));
    }
    o[i] = r;
  }
}

// One block per output row; W is the access unit (uint4 or uint8_t).
template <typename W>
__global__ void GatherRowsKernel(const W* __restrict__ src, int64_t row_units,
                                 const int32_t* __restrict__ rows, W* __restrict__ dst) {
  const int64_t i = blockIdx.x;
  const W* s = src + static_cast<int64_t>(rows[i]) * row_units;
  W* d = dst + i * row_units;
  for (int64_t j = threadIdx.x; j < row_units; j += blockDim.x) d[j] = s[j];
}

// Block (copy, plane); W is the access unit (uint4 or uint8_t).
template <typename W>
__global__ void CopyBlocksKernel(uint8_t* base, int64_t plane_bytes, int64_t block_units,
                                 const int32_t* __restrict__ pairs) {
  uint8_t* plane = base + blockIdx.y * plane_bytes;
  const int64_t block_bytes = block_units * static_cast<int64_t>(sizeof(W));
  const W* src = reinterpret_cast<const W*>(plane + pairs[2 * blockIdx.x] * block_bytes);
  W* dst = reinterpret_cast<W*>(plane + pairs[2 * blockIdx.x + 1] * block_bytes);
  for (int64_t j = threadIdx.x; j < block_units; j += blockDim.x) dst[j] = src[j];
}

template <typename TI, typename TO>
__global__ void ConvertKernel(const TI* __restrict__ src, TO* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = FromFloat<TO>(ToFloat(src[i]));
  }
}

template <typename TO>
__global__ void DequantizeQ8_0Kernel(const uint8_t* __restrict__ blocks, int64_t n,
                                     TO* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint8_t* block = blocks + (i / 32) * 34;
    const float scale = __half2float(*reinterpret_cast<const __half*>(block));
    const int8_t q = static_cast<int8_t>(block[2 + (i % 32)]);
    dst[i] = FromFloat<TO>(scale * static_cast<float>(q));
  }
}

template <typename T>
__global__ void AddBiasKernel(T* __restrict__ out, const float* __restrict__ bias,
                              int64_t cols, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = FromFloat<T>(ToFloat(out[i]) + bias[i % cols]);
  }
}

}  // namespace tokenmill::kernels
