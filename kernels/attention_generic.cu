// Launcher for the generic attention kernel: (activation type, cache type) -> instance.
// 2 x 3 = 6 instances.
#include "kernels/attention_generic.cuh"

namespace tokenmill::kernels {
namespace {

template <typename TQ, typename TKV>
cudaError_t LaunchGenericT(const AttentionArgs& a, cudaStream_t stream) {
  const size_t smem = (a.head_dim + kGenericThreads) * sizeof(float) +
                      kGenericThreads * sizeof(int64_t);
  const dim3 grid(a.batch.max_query_len, a.batch.num_selected, a.num_heads);
  PagedAttentionGenericKernel<TQ, TKV><<<grid, kGenericThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPagedAttentionGeneric(const AttentionArgs& args, cudaStream_t stream) {
  if (args.batch.num_selected <= 0 || args.batch.max_query_len <= 0) return cudaSuccess;
  if (args.head_dim <= 0 || args.head_dim > kGenericThreads * kGenericMaxDimsPerThread ||
      args.num_kv_heads <= 0 || args.num_heads % args.num_kv_heads != 0 ||
      args.act_type == ScalarType::kF16) {
    return cudaErrorInvalidValue;
  }
  return DispatchScalar(args.act_type, [&](auto tq) {
    using TQ = decltype(tq);
    return DispatchScalar(args.kv.type, [&](auto tkv) {
      using TKV = decltype(tkv);
      if constexpr (std::is_same_v<TQ, __half>) {
        return cudaErrorInvalidValue;  // activations are F32 or BF16
      } else {
        return LaunchGenericT<TQ, TKV>(args, stream);
      }
    });
  });
}

}  // namespace tokenmill::kernels
