// Launcher for the split-K decode kernel: (activation type, cache type, head_dim) ->
// instance. 2 x 2 x 2 = 8 instances of PagedDecodeKernel, 2 of DecodeCombineKernel.
#include <algorithm>

#include "kernels/attention_decode.cuh"

namespace tokenmill::kernels {
namespace {

template <typename TQ, typename TKV, int D>
cudaError_t LaunchDecodeT(const AttentionArgs& a, int num_splits, void* workspace,
                          cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(DecodeSmem<TKV, D>);
  const cudaError_t attr = EnsureSharedMemoryLimit<PagedDecodeKernel<TQ, TKV, D>>(kSmem);
  if (attr != cudaSuccess) return attr;
  float* ws_o = nullptr;
  float2* ws_ml = nullptr;
  if (num_splits > 1) {
    const size_t partials = static_cast<size_t>(a.batch.num_selected) * a.num_heads * num_splits;
    ws_o = static_cast<float*>(workspace);
    ws_ml = reinterpret_cast<float2*>(ws_o + partials * D);
  }
  const dim3 grid(num_splits, a.batch.num_selected, a.num_kv_heads);
  PagedDecodeKernel<TQ, TKV, D><<<grid, kDecodeThreads, kSmem, stream>>>(a, num_splits, ws_o, ws_ml);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || num_splits == 1) return err;
  DecodeCombineKernel<TQ><<<dim3(a.batch.num_selected, a.num_heads), D, 0, stream>>>(
      a, num_splits, ws_o, ws_ml);
  return cudaGetLastError();
}

template <typename TQ, typename TKV>
cudaError_t DispatchHeadDim(const AttentionArgs& a, int num_splits, void* ws, cudaStream_t st) {
  switch (a.head_dim) {
    case 64:
      return LaunchDecodeT<TQ, TKV, 64>(a, num_splits, ws, st);
    case 128:
      return LaunchDecodeT<TQ, TKV, 128>(a, num_splits, ws, st);
    default:
      return cudaErrorInvalidValue;
  }
}

template <typename TQ>
cudaError_t DispatchCache(const AttentionArgs& a, int num_splits, void* ws, cudaStream_t st) {
  switch (a.kv.type) {
    case ScalarType::kBF16:
      return DispatchHeadDim<TQ, __nv_bfloat16>(a, num_splits, ws, st);
    case ScalarType::kF16:
      return DispatchHeadDim<TQ, __half>(a, num_splits, ws, st);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool DecodeAttentionFastPath(const AttentionArgs& a) {
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0) return false;
  const int group = a.num_heads / a.num_kv_heads;
  return (a.kv.type == ScalarType::kBF16 || a.kv.type == ScalarType::kF16) &&
         (a.head_dim == 64 || a.head_dim == 128) && group <= kDecodeMaxGroup &&
         (a.act_type == ScalarType::kF32 || a.act_type == ScalarType::kBF16);
}

int ChooseDecodeSplits(int num_seqs, int num_kv_heads, int max_context, int num_sms) {
  const int64_t blocks = std::max<int64_t>(1, int64_t{num_seqs} * num_kv_heads);
  const int64_t by_sm = std::max<int64_t>(1, 2 * int64_t{num_sms} / blocks);
  const int64_t by_ctx = std::max<int64_t>(1, (int64_t{max_context} + 127) / 128);
  const int64_t want = std::min({by_sm, by_ctx, int64_t{kMaxDecodeSplits}});
  int splits = 1;
  while (splits * 2 <= want) splits *= 2;
  return splits;
}

size_t DecodeAttentionWorkspaceBytes(int num_selected, int num_heads, int head_dim,
                                     int num_splits) {
  if (num_splits <= 1) return 0;
  const size_t partials = static_cast<size_t>(num_selected) * num_heads * num_splits;
  return partials * head_dim * sizeof(float) + partials * sizeof(float2);
}

cudaError_t LaunchPagedDecodeAttention(const AttentionArgs& args, int num_splits,
                                       void* workspace, cudaStream_t stream) {
  if (args.batch.num_selected <= 0) return cudaSuccess;
  if (!DecodeAttentionFastPath(args) || num_splits < 1 || num_splits > kMaxDecodeSplits ||
      (num_splits > 1 && (workspace == nullptr || !IsAligned(workspace, 16)))) {
    return cudaErrorInvalidValue;
  }
  if (args.act_type == ScalarType::kBF16) {
    return DispatchCache<__nv_bfloat16>(args, num_splits, workspace, stream);
  }
  return DispatchCache<float>(args, num_splits, workspace, stream);
}

}  // namespace tokenmill::kernels
