// The free functions of include/tokenmill/backend/cuda_backend.h, and the CudaBackend
// members behind them (memory report, device sampling, graph statistics, RoPE tables).
#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "kernels/sampling.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace cuda {
namespace {

absl::StatusOr<CudaBackend*> AsCuda(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", std::string(backend.Name()), "' is not the CUDA backend"));
  }
  return cuda;
}

size_t AlignUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

// A row's distinct seen tokens with their output counts and prompt membership.
void PenaltyEntries(const DeviceSamplingRow& row, std::vector<kernels::PenaltyEntry>* entries) {
  absl::flat_hash_map<int32_t, kernels::PenaltyEntry> seen;
  for (int32_t t : row.output_tokens) {
    kernels::PenaltyEntry& e = seen[t];
    e.token = t;
    ++e.output_count;
  }
  if (row.repetition_penalty != 1.0f) {
    for (int32_t t : row.prompt_tokens) {
      kernels::PenaltyEntry& e = seen[t];
      e.token = t;
      e.in_prompt = 1;
    }
  }
  for (const auto& [token, e] : seen) entries->push_back(e);
}

}  // namespace

absl::StatusOr<const float*> CudaBackend::InverseFrequencies(const RopeParams& p) {
  uint32_t theta_bits;
  std::memcpy(&theta_bits, &p.theta, sizeof(theta_bits));
  const std::string key = absl::StrCat(
      p.head_dim, ",", p.rotary_dim, ",", theta_bits, ",", static_cast<int>(p.scaling), ",",
      absl::StrFormat("%a,%a,%a", p.factor, p.low_freq_factor, p.high_freq_factor), ",",
      p.original_max_position_embeddings);
  if (auto it = inv_freq_.find(key); it != inv_freq_.end()) return it->second;
  const std::vector<float> freqs = RopeInverseFrequencies(p);
  TM_ASSIGN_OR_RETURN(void* dev, allocator_.Allocate(freqs.size() * sizeof(float),
                                                     MemoryKind::kWorkspace));
  // Synchronous and outside any capture: the table is ready before the first launch.
  TM_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(dev, freqs.data(), freqs.size() * sizeof(float), cudaMemcpyHostToDevice));
  inv_freq_.emplace(key, static_cast<const float*>(dev));
  return static_cast<const float*>(dev);
}

absl::StatusOr<CudaMemoryInfo> CudaBackend::MemoryInfo() {
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  CudaMemoryInfo info;
  TM_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  info.weight_bytes = allocator_.bytes_in_use(MemoryKind::kWeight);
  info.activation_bytes = allocator_.bytes_in_use(MemoryKind::kActivation);
  info.workspace_bytes = allocator_.bytes_in_use(MemoryKind::kWorkspace);
  info.kv_cache_bytes = allocator_.bytes_in_use(MemoryKind::kKvCache);
  return info;
}

CudaGraphStats CudaBackend::GraphStats() const {
  CudaGraphStats s;
  s.captures = graphs_->captures();
  s.replays = graphs_->replays();
  s.eager_steps = graphs_->eager_steps();
  s.cached_graphs = graphs_->num_graphs();
  return s;
}

absl::Status CudaBackend::Sample(const TensorView& logits,
                                 const std::vector<DeviceSamplingRow>& rows,
                                 std::vector<int32_t>* tokens) {
  FlushPending();
  TM_RETURN_IF_ERROR(Finish());  // an earlier failure must not pass for a sample
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  const int num_rows = static_cast<int>(rows.size());
  if (logits.dtype != DType::kF32 || logits.Rows() != num_rows || logits.Cols() < 1 ||
      allocator_.BytesAvailable(logits.data) < logits.NumBytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaSampleTokens: logits ", std::string(DTypeName(logits.dtype)),
        logits.shape.ToString(), " must be F32 device memory with ", num_rows, " rows"));
  }
  tokens->assign(num_rows, 0);
  if (num_rows == 0) return absl::OkStatus();
  std::vector<kernels::SamplingRow> params(num_rows);
  std::vector<kernels::PenaltyRow> penalties(num_rows);
  std::vector<kernels::PenaltyEntry> entries;
  bool any_penalty = false;
  for (int i = 0; i < num_rows; ++i) {
    const DeviceSamplingRow& r = rows[i];
    params[i] = {r.temperature, r.top_k, r.top_p, r.min_p, r.seed, r.offset};
    kernels::PenaltyRow& p = penalties[i];
    p = {r.repetition_penalty, r.frequency_penalty, r.presence_penalty,
         static_cast<int32_t>(entries.size()), 0};
    if (r.repetition_penalty != 1.0f || r.frequency_penalty != 0.0f || r.presence_penalty != 0.0f) {
      PenaltyEntries(r, &entries);
      any_penalty = true;
    }
    p.entry_end = static_cast<int32_t>(entries.size());
  }
  // One upload: [params][penalties][entries][tokens out], 16-byte aligned sections.
  const size_t off_pen = AlignUp(params.size() * sizeof(params[0]), 16);
  const size_t off_ent = off_pen + AlignUp(penalties.size() * sizeof(penalties[0]), 16);
  const size_t off_out = off_ent + AlignUp(entries.size() * sizeof(kernels::PenaltyEntry), 16);
  const size_t total = off_out + AlignUp(num_rows * sizeof(int32_t), 16);
  TM_RETURN_IF_ERROR(ReserveScratch(sample_ws_, total));
  TM_RETURN_IF_ERROR(pinned_.Reserve(total));
  auto* host = static_cast<uint8_t*>(pinned_.data());
  std::memcpy(host, params.data(), params.size() * sizeof(params[0]));
  std::memcpy(host + off_pen, penalties.data(), penalties.size() * sizeof(penalties[0]));
  if (!entries.empty()) {
    std::memcpy(host + off_ent, entries.data(), entries.size() * sizeof(entries[0]));
  }
  auto* dev = static_cast<uint8_t*>(sample_ws_.data());
  TM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev, host, off_out, cudaMemcpyHostToDevice, stream_));
  const int64_t vocab = logits.Cols();
  if (any_penalty) {
    TM_CUDA_RETURN_IF_ERROR(kernels::LaunchApplyPenalties(
        logits.As<float>(), vocab, num_rows, reinterpret_cast<kernels::PenaltyRow*>(dev + off_pen),
        reinterpret_cast<kernels::PenaltyEntry*>(dev + off_ent), stream_));
  }
  auto* out = reinterpret_cast<int32_t*>(dev + off_out);
  TM_CUDA_RETURN_IF_ERROR(kernels::LaunchSample(
      logits.As<float>(), vocab, num_rows, reinterpret_cast<kernels::SamplingRow*>(dev), out,
      stream_));
  TM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host + off_out, out, num_rows * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, stream_));
  TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  std::memcpy(tokens->data(), host + off_out, num_rows * sizeof(int32_t));
  return absl::OkStatus();
}

}  // namespace cuda

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(const CudaBackendOptions& options) {
  TM_ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaBackend> backend,
                      cuda::CudaBackend::Create(options));
  return std::unique_ptr<Backend>(std::move(backend));
}

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // "no driver" / "no device" is an answer, not an error
    return 0;
  }
  return count;
}

std::string CudaDeviceDescription(int device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::StrCat("no CUDA device: ", cudaGetErrorString(err));
  }
  if (device < 0 || device >= count) {
    return absl::StrCat("no CUDA device ", device, " (", count, " present)");
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::StrCat("CUDA device ", device, ": properties unavailable");
  }
  return absl::StrFormat("%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor,
                         p.multiProcessorCount,
                         static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
}

absl::StatusOr<CudaMemoryInfo> GetCudaMemoryInfo(Backend& backend) {
  TM_ASSIGN_OR_RETURN(cuda::CudaBackend * cuda, cuda::AsCuda(backend));
  return cuda->MemoryInfo();
}

int64_t ComputeNumKvBlocks(size_t total_bytes, size_t free_bytes, double gpu_memory_utilization,
                           size_t bytes_per_block, size_t reserve_bytes) {
  if (bytes_per_block == 0 || gpu_memory_utilization <= 0.0) return 0;
  const double used = static_cast<double>(total_bytes - std::min(free_bytes, total_bytes));
  const double budget = static_cast<double>(total_bytes) * std::min(gpu_memory_utilization, 1.0) -
                        used - static_cast<double>(reserve_bytes);
  if (budget <= 0.0) return 0;
  return static_cast<int64_t>(budget / static_cast<double>(bytes_per_block));
}

absl::StatusOr<int> CudaNumKvBlocks(Backend& backend, const KvCacheSpec& geometry,
                                    double gpu_memory_utilization, size_t reserve_bytes) {
  TM_ASSIGN_OR_RETURN(cuda::CudaBackend * cuda, cuda::AsCuda(backend));
  if (geometry.num_layers < 1 || geometry.block_size < 1 || geometry.num_kv_heads < 1 ||
      geometry.head_dim < 1) {
    return absl::InvalidArgumentError("CudaNumKvBlocks: incomplete KV geometry");
  }
  TM_ASSIGN_OR_RETURN(CudaMemoryInfo info, cuda->MemoryInfo());
  KvCacheSpec stored = geometry;
  stored.dtype = cuda->StoredKvDType(geometry.dtype);
  const size_t bytes_per_block = stored.BytesPerToken() * static_cast<size_t>(geometry.block_size);
  // The current cache is replaced by the new one, so its memory counts as free.
  const int64_t blocks =
      ComputeNumKvBlocks(info.total_bytes, info.free_bytes + info.kv_cache_bytes,
                         gpu_memory_utilization, bytes_per_block, reserve_bytes);
  const int64_t max_blocks = ((int64_t{1} << 31) - 1) / geometry.block_size;
  return static_cast<int>(std::min(blocks, max_blocks));
}

absl::Status CudaSampleTokens(Backend& backend, const TensorView& logits,
                              const std::vector<DeviceSamplingRow>& rows,
                              std::vector<int32_t>* tokens) {
  TM_ASSIGN_OR_RETURN(cuda::CudaBackend * cuda, cuda::AsCuda(backend));
  return cuda->Sample(logits, rows, tokens);
}

absl::StatusOr<CudaGraphStats> GetCudaGraphStats(Backend& backend) {
  TM_ASSIGN_OR_RETURN(cuda::CudaBackend * cuda, cuda::AsCuda(backend));
  return cuda->GraphStats();
}

}  // namespace tokenmill
