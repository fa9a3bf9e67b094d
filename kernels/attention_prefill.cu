// Launcher for the tensor-core prefill kernel: (activation type, cache type, head_dim)
// -> instance. 2 x 2 x 2 = 8 instances of PagedPrefillKernel.
#include "kernels/attention_prefill.cuh"

namespace tokenmill::kernels {
namespace {

template <typename TQ, typename TKV, int D>
cudaError_t LaunchPrefillT(const AttentionArgs& a, cudaStream_t stream) {
  constexpr size_t kSmem = kPrefillSmemBytes<TKV, D>;
  const cudaError_t attr = EnsureSharedMemoryLimit<PagedPrefillKernel<TQ, TKV, D>>(kSmem);
  if (attr != cudaSuccess) return attr;
  const int tokens_per_tile = kPrefillRows / (a.num_heads / a.num_kv_heads);
  const auto tiles = static_cast<unsigned>(CeilDiv(a.batch.max_query_len, tokens_per_tile));
  const dim3 grid(tiles, a.batch.num_selected, a.num_kv_heads);
  PagedPrefillKernel<TQ, TKV, D><<<grid, kPrefillThreads, kSmem, stream>>>(a);
  return cudaGetLastError();
}

template <typename TQ, typename TKV>
cudaError_t DispatchHeadDim(const AttentionArgs& a, cudaStream_t stream) {
  switch (a.head_dim) {
    case 64:
      return LaunchPrefillT<TQ, TKV, 64>(a, stream);
    case 128:
      return LaunchPrefillT<TQ, TKV, 128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

template <typename TQ>
cudaError_t DispatchCache(const AttentionArgs& a, cudaStream_t stream) {
  switch (a.kv.type) {
    case ScalarType::kBF16:
      return DispatchHeadDim<TQ, __nv_bfloat16>(a, stream);
    case ScalarType::kF16:
      return DispatchHeadDim<TQ, __half>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool PrefillAttentionFastPath(const AttentionArgs& a) {
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0) return false;
  const int group = a.num_heads / a.num_kv_heads;
  return (a.kv.type == ScalarType::kBF16 || a.kv.type == ScalarType::kF16) &&
         (a.head_dim == 64 || a.head_dim == 128) && group <= 16 &&
         (a.act_type == ScalarType::kF32 || a.act_type == ScalarType::kBF16) &&
         IsAligned(a.q, 32) && IsAligned(a.out, 16);
}

cudaError_t LaunchPagedPrefillAttention(const AttentionArgs& args, cudaStream_t stream) {
  if (args.batch.num_selected <= 0 || args.batch.max_query_len <= 0) return cudaSuccess;
  if (!PrefillAttentionFastPath(args)) return cudaErrorInvalidValue;
  if (args.act_type == ScalarType::kBF16) return DispatchCache<__nv_bfloat16>(args, stream);
  return DispatchCache<float>(args, stream);
}

}  // namespace tokenmill::kernels
