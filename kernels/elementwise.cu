// Launchers for elementwise.h: runtime dtypes -> the template instances of
// elementwise.cuh. Each op takes the 16-byte vector path when sizes and pointers allow
// and the scalar path otherwise, so odd shapes (tiny test models) stay correct.
#include "kernels/elementwise.cuh"
#include "kernels/elementwise.h"

#include <initializer_list>

namespace tokenmill::kernels {
namespace {

template <typename TT, typename TO>
cudaError_t EmbeddingT(const TT* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                       int64_t num_tokens, TO* out, cudaStream_t stream) {
  constexpr int kN = 4;
  const bool vec = hidden % kN == 0 && IsAligned(table, kN * sizeof(TT)) &&
                   IsAligned(out, kN * sizeof(TO));
  const int64_t units = vec ? hidden / kN : hidden;
  const int threads = RowThreads(units, 256);
  if (vec) {
    EmbeddingKernel<TT, TO, kN>
        <<<static_cast<unsigned>(num_tokens), threads, 0, stream>>>(table, vocab, hidden, ids, out);
  } else {
    EmbeddingKernel<TT, TO, 1>
        <<<static_cast<unsigned>(num_tokens), threads, 0, stream>>>(table, vocab, hidden, ids, out);
  }
  return cudaGetLastError();
}

template <typename T>
bool UseVec16(int64_t cols, std::initializer_list<const void*> ptrs) {
  if (cols % kVec16<T> != 0) return false;
  for (const void* p : ptrs)
    if (!IsAligned(p, 16)) return false;
  return true;
}

template <typename T>
cudaError_t RmsNormT(const T* x, const float* w, T* out, int64_t rows, int64_t cols, float eps,
                     cudaStream_t stream) {
  constexpr int kN = kVec16<T>;
  const auto grid = static_cast<unsigned>(rows);
  if (UseVec16<T>(cols, {x, out}) && IsAligned(w, kN * 4)) {
    RmsNormKernel<T, kN><<<grid, RowThreads(cols / kN, 512), 0, stream>>>(x, w, out, cols, eps);
  } else {
    RmsNormKernel<T, 1><<<grid, RowThreads(cols, 512), 0, stream>>>(x, w, out, cols, eps);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t AddRmsNormT(T* residual, const T* delta, const float* w, T* out, int64_t rows,
                        int64_t cols, float eps, cudaStream_t stream) {
  constexpr int kN = kVec16<T>;
  const auto grid = static_cast<unsigned>(rows);
  if (UseVec16<T>(cols, {residual, delta, out}) && IsAligned(w, kN * 4)) {
    AddRmsNormKernel<T, kN>
        <<<grid, RowThreads(cols / kN, 512), 0, stream>>>(residual, delta, w, out, cols, eps);
  } else {
    AddRmsNormKernel<T, 1>
        <<<grid, RowThreads(cols, 512), 0, stream>>>(residual, delta, w, out, cols, eps);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t SiluMulT(const T* gate, const T* up, T* out, int64_t n, cudaStream_t stream) {
  constexpr int kN = kVec16<T>;
  if (UseVec16<T>(n, {gate, up, out})) {
    SiluMulKernel<T, kN><<<GridFor(n / kN, 256), 256, 0, stream>>>(gate, up, out, n / kN);
  } else {
    SiluMulKernel<T, 1><<<GridFor(n, 256), 256, 0, stream>>>(gate, up, out, n);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchEmbedding(const void* table, ScalarType table_type, int64_t vocab,
                            int64_t hidden, const int32_t* ids, int64_t num_tokens, void* out,
                            ScalarType out_type, cudaStream_t stream) {
  if (num_tokens <= 0 || hidden <= 0) return cudaSuccess;
  return DispatchScalar(table_type, [&](auto tt) {
    using TT = decltype(tt);
    return DispatchScalar(out_type, [&](auto to) {
      using TO = decltype(to);
      return EmbeddingT(static_cast<const TT*>(table), vocab, hidden, ids, num_tokens,
                        static_cast<TO*>(out), stream);
    });
  });
}

cudaError_t LaunchRmsNorm(const void* x, const float* weight, void* out, ScalarType type,
                          int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  return DispatchScalar(type, [&](auto t) {
    using T = decltype(t);
    return RmsNormT(static_cast<const T*>(x), weight, static_cast<T*>(out), rows, cols, eps,
                    stream);
  });
}

cudaError_t LaunchAddRmsNorm(void* residual, const void* delta, const float* weight, void* out,
                             ScalarType type, int64_t rows, int64_t cols, float eps,
                             cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  return DispatchScalar(type, [&](auto t) {
    using T = decltype(t);
    return AddRmsNormT(static_cast<T*>(residual), static_cast<const T*>(delta), weight,
                       static_cast<T*>(out), rows, cols, eps, stream);
  });
}

cudaError_t LaunchSiluMul(const void* gate, const void* up, void* out, ScalarType type,
                          int64_t num_elements, cudaStream_t stream) {
  if (num_elements <= 0) return cudaSuccess;
  return DispatchScalar(type, [&](auto t) {
    using T = decltype(t);
    return SiluMulT(static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out),
                    num_elements, stream);
  });
}

cudaError_t LaunchGatherRows(const void* src, int64_t row_bytes, const int32_t* rows,
                             int64_t num_rows, void* dst, cudaStream_t stream) {
  if (num_rows <= 0 || row_bytes <= 0) return cudaSuccess;
  const auto grid = static_cast<unsigned>(num_rows);
  if (row_bytes % 16 == 0 && IsAligned(src, 16) && IsAligned(dst, 16)) {
    const int64_t units = row_bytes / 16;
    GatherRowsKernel<uint4><<<grid, RowThreads(units, 256), 0, stream>>>(
        static_cast<const uint4*>(src), units, rows, static_cast<uint4*>(dst));
  } else {
    GatherRowsKernel<uint8_t><<<grid, RowThreads(row_bytes, 256), 0, stream>>>(
        static_cast<const uint8_t*>(src), row_bytes, rows, static_cast<uint8_t*>(dst));
  }
  return cudaGetLastError();
}

cudaError_t LaunchCopyBlocks(void* base, int64_t plane_bytes, int num_planes, int64_t block_bytes,
                             const int32_t* pairs, int num_copies, cudaStream_t stream) {
  if (num_copies <= 0 || num_planes <= 0 || block_bytes <= 0) return cudaSuccess;
  const dim3 grid(num_copies, num_planes);
  auto* b = static_cast<uint8_t*>(base);
  if (block_bytes % 16 == 0 && plane_bytes % 16 == 0 && IsAligned(base, 16)) {
    CopyBlocksKernel<uint4><<<grid, 256, 0, stream>>>(b, plane_bytes, block_bytes / 16, pairs);
  } else {
    CopyBlocksKernel<uint8_t><<<grid, 256, 0, stream>>>(b, plane_bytes, block_bytes, pairs);
  }
  return cudaGetLastError();
}

cudaError_t LaunchConvert(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                          int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  return DispatchScalar(src_type, [&](auto ti) {
    using TI = decltype(ti);
    return DispatchScalar(dst_type, [&](auto to) {
      using TO = decltype(to);
      ConvertKernel<TI, TO><<<GridFor(n, 256), 256, 0, stream>>>(static_cast<const TI*>(src),
                                                                 static_cast<TO*>(dst), n);
      return cudaGetLastError();
    });
  });
}

cudaError_t LaunchDequantizeQ8_0(const void* blocks, int64_t n, void* dst, ScalarType dst_type,
                                 cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (n % 32 != 0) return cudaErrorInvalidValue;
  return DispatchScalar(dst_type, [&](auto to) {
    using TO = decltype(to);
    DequantizeQ8_0Kernel<TO><<<GridFor(n, 256), 256, 0, stream>>>(
        static_cast<const uint8_t*>(blocks), n, static_cast<TO*>(dst));
    return cudaGetLastError();
  });
}

cudaError_t LaunchAddBias(void* out, ScalarType type, const float* bias, int64_t rows,
                          int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return cudaSuccess;
  return DispatchScalar(type, [&](auto t) {
    using T = decltype(t);
    AddBiasKernel<T><<<GridFor(n, 256), 256, 0, stream>>>(static_cast<T*>(out), bias, cols, n);
    return cudaGetLastError();
  });
}

}  // namespace tokenmill::kernels
