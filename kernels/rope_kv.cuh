// Kernel template for rope_kv.h. Instantiated in rope_kv.cu.
#pragma once

#include <type_traits>

#include "kernels/common.cuh"
#include "kernels/rope_kv.h"

namespace tokenmill::kernels {

// Pair p < rotary_dim/2 of a head rotates elements (i0, i1).
__device__ __forceinline__ void RopePair(int p, int half, bool is_neox, int* i0, int* i1) {
  *i0 = is_neox ? p : 2 * p;
  *i1 = is_neox ? p + half : 2 * p + 1;
}

// One block per token. cos/sin of the token's angles are computed once into shared
// memory (rotary_dim floats) and reused by every head.
template <typename TA, typename TC>
__global__ void RopeKvKernel(RopeKvArgs a) {
  extern __shared__ float cos_sin[];  // [half] cos, then [half] sin
  const int64_t t = blockIdx.x;
  const int D = a.head_dim, half = a.rotary_dim / 2, hkv = a.num_kv_heads;
  const bool rotate = a.inv_freq != nullptr && half > 0;
  if (rotate) {
    // The angle in double keeps long positions exact (a float angle at position 131072
    // is off by ~0.01 rad); half a head's worth of double sincos per token is cheap.
    const double pos = static_cast<double>(a.positions[t]);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      double s, c;
      sincos(pos * static_cast<double>(a.inv_freq[i]), &s, &c);
      cos_sin[i] = static_cast<float>(c);
      cos_sin[half + i] = static_cast<float>(s);
    }
    __syncthreads();
  }
  if (rotate && a.rotate_q) {
    TA* q = static_cast<TA*>(a.q) + t * a.num_heads * D;
    for (int idx = threadIdx.x; idx < a.num_heads * half; idx += blockDim.x) {
      const int h = idx / half, p = idx % half;
      int i0, i1;
      RopePair(p, half, a.is_neox, &i0, &i1);
      const float x0 = ToFloat(q[h * D + i0]), x1 = ToFloat(q[h * D + i1]);
      const float c = cos_sin[p], s = cos_sin[half + p];
      q[h * D + i0] = FromFloat<TA>(x0 * c - x1 * s);
      q[h * D + i1] = FromFloat<TA>(x1 * c + x0 * s);
    }
  }
  const int32_t slot = a.k_cache != nullptr ? a.slot_mapping[t] : -1;
  TC* kc = slot >= 0 ? static_cast<TC*>(a.k_cache) + static_cast<int64_t>(slot) * hkv * D : nullptr;
  TC* vc = slot >= 0 ? static_cast<TC*>(a.v_cache) + static_cast<int64_t>(slot) * hkv * D : nullptr;
  TA* k = static_cast<TA*>(a.k) + t * hkv * D;
  if (rotate && a.rotate_k) {
    for (int idx = threadIdx.x; idx < hkv * half; idx += blockDim.x) {
      const int h = idx / half, p = idx % half;
      int i0, i1;
      RopePair(p, half, a.is_neox, &i0, &i1);
      const float x0 = ToFloat(k[h * D + i0]), x1 = ToFloat(k[h * D + i1]);
      const float c = cos_sin[p], s = cos_sin[half + p];
      const float y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
      k[h * D + i0] = FromFloat<TA>(y0);
      k[h * D + i1] = FromFloat<TA>(y1);
      if (kc != nullptr) {
        kc[h * D + i0] = FromFloat<TC>(y0);
        kc[h * D + i1] = FromFloat<TC>(y1);
      }
    }
    const int tail = D - a.rotary_dim;  // dims the rotation leaves alone
    if (kc != nullptr && tail > 0) {
      for (int idx = threadIdx.x; idx < hkv * tail; idx += blockDim.x) {
        const int h = idx / tail, d = a.rotary_dim + idx % tail;
        kc[h * D + d] = FromFloat<TC>(ToFloat(k[h * D + d]));
      }
    }
  } else if (kc != nullptr) {
    for (int idx = threadIdx.x; idx < hkv * D; idx += blockDim.x) {
      kc[idx] = FromFloat<TC>(ToFloat(k[idx]));
    }
  }
  if (vc != nullptr) {
    const TA* v = static_cast<const TA*>(a.v) + t * hkv * D;
    for (int idx = threadIdx.x; idx < hkv * D; idx += blockDim.x) {
      vc[idx] = FromFloat<TC>(ToFloat(v[idx]));
    }
  }
}

}  // namespace tokenmill::kernels
