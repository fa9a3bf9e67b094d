// The CUDA backend: the Backend ops on one NVIDIA GPU (one instance per rank and device).
//
// Available when the build has CUDA (the tm_backend_cuda target exists and defines
// TOKENMILL_HAVE_CUDA); everything compiles and links without a GPU, and
// CudaDeviceCount() returns 0 there.
//
// Dtypes (docs/cuda.md has the details):
//   - Activations: F32 or BF16 tensors from Allocate(); every op accepts both (all
//     activation arguments of an op share one dtype, except MatMul's output). BF16 halves
//     activation traffic; F32 is what the graph allocates today and works unchanged.
//   - Weights: UploadWeight() converts matrices to `weight_dtype` (default BF16; F16 host
//     weights stay F16; Q8_0 is dequantized to F16, or F32 with weight_dtype F32) and
//     vectors (norms, biases) to F32. The returned view carries the device dtype.
//   - KV cache: F16 and BF16 specs are honoured; an F32 spec is stored as
//     `f32_kv_cache_dtype` (default BF16), and kv_cache_spec() reports the dtype used.
// Errors: ops record the first failure (CUDA errors included) and Finish() returns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/backend/backend.h"

namespace tokenmill {

struct CudaBackendOptions {
  int device = 0;
  // Device dtype of weight matrices: kBF16, kF16 or kF32 (exact, slow; for tests).
  DType weight_dtype = DType::kBF16;
  // What an F32 KV-cache spec is stored as: kBF16, kF16, or kF32 to honour it.
  DType f32_kv_cache_dtype = DType::kBF16;
  // F32 GEMMs on TF32 tensor cores (about 1e-3 relative error) instead of SGEMM.
  bool allow_tf32 = false;
  // Split-K decode and tensor-core prefill attention where shapes allow; false runs the
  // generic fp32 kernels everywhere (slow; exact reference behaviour for tests).
  bool use_fast_attention = true;
  // Capture decode-only steps into CUDA graphs per batch-size bucket (docs/cuda.md).
  bool use_cuda_graphs = true;
  int max_graph_batch_size = 256;  // decode steps with more sequences run eagerly
  int max_graphs = 128;            // captured graphs kept (least recently used evicted)
  size_t gemm_workspace_bytes = size_t{32} << 20;
};

// A GPU backend on options.device. UNAVAILABLE when there is no usable device (no driver,
// no GPU, device index out of range); INVALID_ARGUMENT for unsupported option values.
absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(const CudaBackendOptions& options = {});

// Number of CUDA devices; 0 (never an error) without a driver or a GPU.
int CudaDeviceCount();

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" or the reason there is none.
std::string CudaDeviceDescription(int device = 0);

// --- memory planning -------------------------------------------------------------------
struct CudaMemoryInfo {
  size_t total_bytes = 0;       // device memory
  size_t free_bytes = 0;        // free on the device now (all processes counted)
  size_t weight_bytes = 0;      // held by this backend, by kind
  size_t activation_bytes = 0;
  size_t workspace_bytes = 0;   // GEMM workspace, step metadata, scratch
  size_t kv_cache_bytes = 0;
};

// Requires: `backend` came from MakeCudaBackend (else INVALID_ARGUMENT).
absl::StatusOr<CudaMemoryInfo> GetCudaMemoryInfo(Backend& backend);

// KV blocks that fit when this process may use `gpu_memory_utilization` of the device's
// total memory: (total * utilization - used - reserve) / bytes_per_block, floored at 0,
// where used = total - free (weights, activations, workspaces and other processes).
// Pure arithmetic, the rule behind CudaNumKvBlocks.
int64_t ComputeNumKvBlocks(size_t total_bytes, size_t free_bytes, double gpu_memory_utilization,
                           size_t bytes_per_block, size_t reserve_bytes);

// Blocks for a cache of `geometry` (num_blocks ignored; dtype as the backend would store
// it), planned after weights and activations are allocated, keeping `reserve_bytes` free
// for growth of workspaces. A KV cache already allocated counts as free.
absl::StatusOr<int> CudaNumKvBlocks(Backend& backend, const KvCacheSpec& geometry,
                                    double gpu_memory_utilization,
                                    size_t reserve_bytes = size_t{256} << 20);

// --- sampling on the device ------------------------------------------------------------
// One row's parameters (OpenAI / vLLM semantics, as SamplingParams).
struct DeviceSamplingRow {
  float temperature = 1.0f;  // <= 0: greedy
  int top_k = 0;             // <= 0: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  // over prompt and output tokens
  float frequency_penalty = 0.0f;   // over output tokens
  float presence_penalty = 0.0f;
  uint64_t seed = 0;
  uint64_t offset = 0;  // the request's draw index (e.g. tokens generated so far)
  std::vector<int32_t> prompt_tokens;  // only read when repetition_penalty != 1
  std::vector<int32_t> output_tokens;  // read when any penalty is on
};

// Picks one token per row of `logits` (F32 [rows.size(), vocab] device tensor from this
// backend). Penalties are applied to `logits` in place. Synchronous: *tokens is filled on
// return. Same (seed, offset, logits) -> same token, whatever else is in the batch.
absl::Status CudaSampleTokens(Backend& backend, const TensorView& logits,
                              const std::vector<DeviceSamplingRow>& rows,
                              std::vector<int32_t>* tokens);

// Graph statistics for tests and benchmarks.
struct CudaGraphStats {
  int64_t captures = 0;  // graphs captured and instantiated
  int64_t replays = 0;   // steps served by replaying a captured graph
  int64_t eager_steps = 0;
  int64_t cached_graphs = 0;
};
absl::StatusOr<CudaGraphStats> GetCudaGraphStats(Backend& backend);

}  // namespace tokenmill
