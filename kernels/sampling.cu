// Launchers for sampling.h.
#include "kernels/sampling.cuh"

namespace tokenmill::kernels {

cudaError_t LaunchApplyPenalties(float* logits, int64_t vocab, int num_rows,
                                 const PenaltyRow* rows, const PenaltyEntry* entries,
                                 cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  ApplyPenaltiesKernel<<<num_rows, 256, 0, stream>>>(logits, vocab, rows, entries);
  return cudaGetLastError();
}

cudaError_t LaunchArgmax(const float* logits, int64_t vocab, int num_rows, int32_t* out,
                         cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  if (vocab <= 0 || vocab >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  ArgmaxKernel<<<num_rows, kSampleThreads, 0, stream>>>(logits, vocab, out);
  return cudaGetLastError();
}

cudaError_t LaunchSample(const float* logits, int64_t vocab, int num_rows,
                         const SamplingRow* rows, int32_t* out, cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  if (vocab <= 0 || vocab >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  SampleKernel<<<num_rows, kSampleThreads, 0, stream>>>(logits, vocab, rows, out);
  return cudaGetLastError();
}

}  // namespace tokenmill::kernels
