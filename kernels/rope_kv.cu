// Launcher for rope_kv.h: activation type x cache type -> RopeKvKernel instance.
#include "kernels/rope_kv.cuh"

namespace tokenmill::kernels {

cudaError_t LaunchRopeKv(const RopeKvArgs& args, cudaStream_t stream) {
  if (args.num_tokens <= 0) return cudaSuccess;
  const bool rotate = args.inv_freq != nullptr && (args.rotate_q || args.rotate_k);
  if (!rotate && args.k_cache == nullptr) return cudaSuccess;
  if (args.head_dim <= 0 || args.head_dim > 1024 || args.rotary_dim % 2 != 0 ||
      args.rotary_dim > args.head_dim || args.act_type == ScalarType::kF16) {
    return cudaErrorInvalidValue;
  }
  const size_t smem = rotate ? static_cast<size_t>(args.rotary_dim) * sizeof(float) : 0;
  const auto grid = static_cast<unsigned>(args.num_tokens);
  return DispatchScalar(args.act_type, [&](auto ta) {
    using TA = decltype(ta);
    return DispatchScalar(args.cache_type, [&](auto tc) {
      using TC = decltype(tc);
      if constexpr (std::is_same_v<TA, __half>) {
        return cudaErrorInvalidValue;  // activations are F32 or BF16
      } else {
        RopeKvKernel<TA, TC><<<grid, 128, smem, stream>>>(args);
        return cudaGetLastError();
      }
    });
  });
}

}  // namespace tokenmill::kernels
