// Kernel templates for sampling.h. Instantiated (they are not templates on types, but
// kept here with their helpers) in sampling.cu.
//
// One block of 1024 threads per row. Top-k and top-p thresholds come from radix
// selection on the order-preserving 32-bit key of each scaled logit, 8 bits per pass:
// top-k counts tokens per digit, top-p sums fixed-point probability mass per digit
// (integers, so the result does not depend on atomic ordering). Each pass re-reads the
// row, which stays in L2 for the rows of one step.
#pragma once

#include "kernels/common.cuh"
#include "kernels/sampling.h"

namespace tokenmill::kernels {

inline constexpr int kSampleThreads = 1024;

// Monotonic map float -> uint32 (a < b  <=>  key(a) < key(b)) for non-NaN values.
__device__ __forceinline__ uint32_t OrderedKey(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float ScaledLogit(const float* x, int64_t i, float temperature) {
  const float v = x[i];
  return isnan(v) ? -INFINITY : v / temperature;
}

// Philox4x32-10 (Salmon et al., SC'11): counter-based, so each token's noise depends
// only on (seed, offset, token id).
__device__ __forceinline__ uint32_t Philox(uint64_t seed, uint64_t offset, uint32_t index) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t c0 = index, c1 = static_cast<uint32_t>(offset), c2 = static_cast<uint32_t>(offset >> 32),
           c3 = 0x5eedu;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = c0 * 0xD2511F53u, hi0 = __umulhi(c0, 0xD2511F53u);
    const uint32_t lo1 = c2 * 0xCD9E8D57u, hi1 = __umulhi(c2, 0xCD9E8D57u);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// Standard Gumbel noise from 24 random bits; u in (0, 1) exactly.
__device__ __forceinline__ float Gumbel(uint32_t bits) {
  const float u = (static_cast<float>(bits >> 8) + 0.5f) * (1.0f / 16777216.0f);
  return -logf(-logf(u));
}

// Keeps the larger value, or the lower index on ties.
__device__ __forceinline__ void ArgMaxMerge(float& v, int& idx, float ov, int oidx) {
  if (ov > v || (ov == v && oidx < idx)) {
    v = ov;
    idx = oidx;
  }
}

// Block-wide argmax; every thread gets the winning index.
__device__ __forceinline__ int BlockArgMax(float v, int idx, float* sv, int* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ArgMaxMerge(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  }
  __syncthreads();
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = idx;
  }
  __syncthreads();
  if (lane < static_cast<int>(blockDim.x >> 5)) {
    v = sv[lane];
    idx = si[lane];
  } else {
    v = -INFINITY;
    idx = 0x7fffffff;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ArgMaxMerge(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  }
  return idx;
}

struct SampleShared {
  uint32_t count[256];
  unsigned long long mass[256];
  unsigned long long total;
  uint32_t prefix;
  unsigned long long remaining;
  float red_v[32];
  int red_i[32];
};

// Key of the k-th largest scaled logit (1 <= k <= vocab), by four 8-bit digit passes.
__device__ uint32_t SelectKthKey(const float* x, int64_t vocab, float temperature, int k,
                                 SampleShared& sh) {
  uint32_t prefix = 0, mask = 0;
  uint32_t remaining = static_cast<uint32_t>(k);
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) sh.count[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const uint32_t key = OrderedKey(ScaledLogit(x, i, temperature));
      if ((key & mask) == prefix) atomicAdd(&sh.count[(key >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      sh.prefix = prefix;  // unreachable fallback (k <= candidates): keep this prefix
      sh.remaining = 1;
      uint32_t above = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + sh.count[b] >= remaining) {
          sh.prefix = prefix | (static_cast<uint32_t>(b) << shift);
          sh.remaining = remaining - above;
          break;
        }
        above += sh.count[b];
      }
    }
    __syncthreads();
    prefix = sh.prefix;
    remaining = static_cast<uint32_t>(sh.remaining);
    mask |= 0xffu << shift;
  }
  return prefix;
}

// Fixed-point probability mass (relative to the max, whose mass is 2^32).
__device__ __forceinline__ unsigned long long MassOf(float v, float v_max) {
  return __float2ull_rz(__expf(v - v_max) * 4294967296.0f);
}

// Smallest key threshold whose kept set (key >= threshold, among key >= floor) holds at
// least `target` mass.
__device__ uint32_t SelectMassKey(const float* x, int64_t vocab, float temperature,
                                  float v_max, uint32_t floor_key, unsigned long long target,
                                  SampleShared& sh) {
  uint32_t prefix = 0, mask = 0;
  unsigned long long remaining = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) sh.mass[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float v = ScaledLogit(x, i, temperature);
      const uint32_t key = OrderedKey(v);
      if (key >= floor_key && (key & mask) == prefix) {
        atomicAdd(&sh.mass[(key >> shift) & 0xffu], MassOf(v, v_max));
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      // The candidates' mass is >= remaining by construction (exact integer sums), so a
      // bin is always found; the fallback keeps the whole prefix.
      sh.prefix = prefix;
      sh.remaining = 1;
      unsigned long long above = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + sh.mass[b] >= remaining) {
          sh.prefix = prefix | (static_cast<uint32_t>(b) << shift);
          sh.remaining = remaining - above;
          break;
        }
        above += sh.mass[b];
      }
    }
    __syncthreads();
    prefix = sh.prefix;
    remaining = sh.remaining;
    mask |= 0xffu << shift;
  }
  return prefix > floor_key ? prefix : floor_key;
}

__global__ void __launch_bounds__(kSampleThreads)
    SampleKernel(const float* __restrict__ logits, int64_t vocab,
                 const SamplingRow* __restrict__ rows, int32_t* __restrict__ out) {
  __shared__ SampleShared sh;
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  const SamplingRow p = rows[blockIdx.x];
  const bool greedy = p.temperature <= 0.0f || p.top_k == 1;
  const float temperature = greedy ? 1.0f : p.temperature;
  float best = -INFINITY;
  int best_idx = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    ArgMaxMerge(best, best_idx, ScaledLogit(x, i, temperature), static_cast<int>(i));
  }
  const int argmax = BlockArgMax(best, best_idx, sh.red_v, sh.red_i);
  if (greedy) {
    if (threadIdx.x == 0) out[blockIdx.x] = argmax;
    return;
  }
  const float v_max = ScaledLogit(x, argmax, temperature);
  uint32_t threshold = 0;  // keep everything
  if (p.min_p > 0.0f) threshold = max(threshold, OrderedKey(v_max + logf(p.min_p)));
  if (p.top_k > 0 && p.top_k < vocab) {
    threshold = max(threshold, SelectKthKey(x, vocab, temperature, p.top_k, sh));
  }
  if (p.top_p < 1.0f) {
    if (threadIdx.x == 0) sh.total = 0;
    __syncthreads();
    unsigned long long local = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float v = ScaledLogit(x, i, temperature);
      if (OrderedKey(v) >= threshold) local += MassOf(v, v_max);
    }
    atomicAdd(&sh.total, local);
    __syncthreads();
    const double target_d = static_cast<double>(p.top_p) * static_cast<double>(sh.total);
    const unsigned long long target = target_d < 1.0 ? 1ull : static_cast<unsigned long long>(target_d);
    threshold = SelectMassKey(x, vocab, temperature, v_max, threshold, target, sh);
  }
  float score = -INFINITY;
  int idx = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = ScaledLogit(x, i, temperature);
    if (OrderedKey(v) >= threshold && v != -INFINITY) {
      const float s = v + Gumbel(Philox(p.seed, p.offset, static_cast<uint32_t>(i)));
      ArgMaxMerge(score, idx, s, static_cast<int>(i));
    }
  }
  const int chosen = BlockArgMax(score, idx, sh.red_v, sh.red_i);
  if (threadIdx.x == 0) out[blockIdx.x] = chosen == 0x7fffffff ? argmax : chosen;
}

// One block per row; threads over the row's distinct seen tokens.
__global__ void ApplyPenaltiesKernel(float* __restrict__ logits, int64_t vocab,
                                     const PenaltyRow* __restrict__ rows,
                                     const PenaltyEntry* __restrict__ entries) {
  const PenaltyRow r = rows[blockIdx.x];
  float* x = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  for (int e = r.entry_begin + threadIdx.x; e < r.entry_end; e += blockDim.x) {
    const PenaltyEntry pe = entries[e];
    if (pe.token < 0 || pe.token >= vocab) continue;
    float v = x[pe.token];
    if (r.repetition != 1.0f && (pe.in_prompt != 0 || pe.output_count > 0)) {
      v = v > 0.0f ? v / r.repetition : v * r.repetition;
    }
    v -= r.frequency * static_cast<float>(pe.output_count);
    if (pe.output_count > 0) v -= r.presence;
    x[pe.token] = v;
  }
}

__global__ void __launch_bounds__(kSampleThreads)
    ArgmaxKernel(const float* __restrict__ logits, int64_t vocab, int32_t* __restrict__ out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float best = -INFINITY;
  int best_idx = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    ArgMaxMerge(best, best_idx, ScaledLogit(x, i, 1.0f), static_cast<int>(i));
  }
  const int idx = BlockArgMax(best, best_idx, sv, si);
  if (threadIdx.x == 0) out[blockIdx.x] = idx;
}

}  // namespace tokenmill::kernels
