// CudaBackend: device setup, memory, step planning, and the launch/record plumbing.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "kernels/elementwise.h"
#include "tokenmill/core/status.h"

namespace tokenmill::cuda {
namespace {

constexpr size_t kCopyChunkBytes = size_t{64} << 20;
constexpr int64_t kConvertChunkElems = int64_t{16} << 20;  // a multiple of 32 (Q8_0 blocks)

// Decode batch sizes that get their own graph: fine-grained where padding would cost
// the most, coarser above (as vLLM's capture sizes).
int GraphBucket(int num_seqs, int max_batch) {
  int bucket = 0;
  if (num_seqs <= 4) {
    bucket = num_seqs <= 1 ? 1 : (num_seqs <= 2 ? 2 : 4);
  } else if (num_seqs <= 64) {
    bucket = (num_seqs + 7) / 8 * 8;
  } else if (num_seqs <= 256) {
    bucket = (num_seqs + 15) / 16 * 16;
  } else {
    bucket = (num_seqs + 31) / 32 * 32;
  }
  return bucket <= max_batch ? bucket : 0;
}

bool IsWeightDType(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kQ8_0;
}

}  // namespace

kernels::ScalarType ToScalar(DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return kernels::ScalarType::kF16;
    case DType::kBF16:
      return kernels::ScalarType::kBF16;
    default:
      return kernels::ScalarType::kF32;
  }
}

bool IsActivationDType(DType dtype) { return dtype == DType::kF32 || dtype == DType::kBF16; }

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options) {
  std::unique_ptr<CudaBackend> b(new CudaBackend(options));
  TM_RETURN_IF_ERROR(b->Init());
  return b;
}

absl::Status CudaBackend::Init() {
  const CudaBackendOptions& o = options_;
  for (DType d : {o.weight_dtype, o.f32_kv_cache_dtype}) {
    if (d != DType::kF32 && d != DType::kF16 && d != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CudaBackendOptions: dtype ", std::string(DTypeName(d)), " (F32, F16 or BF16)"));
    }
  }
  if (o.max_graph_batch_size < 0 || o.max_graphs < 1) {
    return absl::InvalidArgumentError("CudaBackendOptions: max_graph_batch_size >= 0, max_graphs >= 1");
  }
  const int count = CudaDeviceCount();
  if (o.device < 0 || o.device >= count) {
    return absl::UnavailableError(absl::StrCat("CUDA device ", o.device, " requested, ", count,
                                               " present (", CudaDeviceDescription(0), ")"));
  }
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
  TM_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&props_, o.device));
  if (props_.major < 8) {
    return absl::UnavailableError(absl::StrCat("CUDA device ", o.device, " (", props_.name,
                                               ") is sm_", props_.major, props_.minor,
                                               "; tokenmill's kernels need sm_80 or newer"));
  }
  TM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TM_ASSIGN_OR_RETURN(gemm_, CublasLtGemm::Create(&allocator_, o.gemm_workspace_bytes));
  steps_ = std::make_unique<StepBuffers>(&allocator_);
  graphs_ = std::make_unique<StepGraphs>(o.max_graphs);
  return absl::OkStatus();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) {
    (void)cudaSetDevice(options_.device);
    (void)cudaStreamSynchronize(stream_);
  }
  graphs_.reset();
  steps_.reset();
  gemm_.reset();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  // allocator_ frees the remaining allocations (activations, weights, KV cache).
}

// --- errors -------------------------------------------------------------------------------

void CudaBackend::Fail(absl::Status status) {
  if (status_.ok()) status_ = std::move(status);
}

bool CudaBackend::Check(bool ok, std::string_view op, const std::string& what) {
  if (!ok) Fail(absl::InvalidArgumentError(absl::StrCat(std::string(op), ": ", what)));
  return ok;
}

bool CudaBackend::CheckPlan(std::string_view op) {
  if (has_plan_) return true;
  Fail(absl::FailedPreconditionError(absl::StrCat(std::string(op), ": no step planned")));
  return false;
}

bool CudaBackend::CheckActivation(std::string_view op, std::string_view name, const TensorView& t,
                                  int64_t rows, int64_t cols) {
  const std::string n(name);
  if (!Check(t.data != nullptr, op, n + " has no data")) return false;
  if (!Check(IsActivationDType(t.dtype), op,
             absl::StrCat(n, " is ", std::string(DTypeName(t.dtype)), ", expected F32 or BF16"))) {
    return false;
  }
  const bool rows_ok = rows < 0 || t.Rows() == rows;
  const bool cols_ok = cols < 0 || t.Cols() == cols;
  if (!Check(rows_ok && cols_ok, op,
             absl::StrCat(n, " has shape ", t.shape.ToString(), ", expected [",
                          rows < 0 ? std::string("*") : absl::StrCat(rows), ", ",
                          cols < 0 ? std::string("*") : absl::StrCat(cols), "]"))) {
    return false;
  }
  return Check(allocator_.BytesAvailable(t.data) >= t.NumBytes(), op,
               n + " is not memory of this backend (Allocate or UploadWeight)");
}

bool CudaBackend::CheckSameDType(std::string_view op, std::initializer_list<const TensorView*> ts) {
  const DType d = (*ts.begin())->dtype;
  for (const TensorView* t : ts) {
    if (!Check(t->dtype == d, op,
               absl::StrCat("activations mix ", std::string(DTypeName(d)), " and ",
                            std::string(DTypeName(t->dtype))))) {
      return false;
    }
  }
  return true;
}

bool CudaBackend::CheckVector(std::string_view op, std::string_view name, const TensorView& t,
                              int64_t dim) {
  return Check(t.data != nullptr && t.dtype == DType::kF32 && t.NumElements() == dim &&
                   allocator_.BytesAvailable(t.data) >= t.NumBytes(),
               op,
               absl::StrCat(std::string(name), " ", std::string(DTypeName(t.dtype)),
                            t.shape.ToString(), " must be an uploaded vector of ", dim,
                            " elements"));
}

// --- launching ----------------------------------------------------------------------------

bool CudaBackend::RowsFit(const TensorView& t, int64_t rows) const {
  return allocator_.BytesAvailable(t.data) >= DTypeBytes(t.dtype, rows * t.Cols());
}

void CudaBackend::Launch(const KeyBuilder& key, int64_t rows,
                         std::initializer_list<const TensorView*> row_tensors, LaunchFn fn) {
  if (!status_.ok()) return;
  if (graphs_->recording()) {
    bool fits = true;
    for (const TensorView* t : row_tensors) fits = fits && RowsFit(*t, graphs_->padded_rows());
    graphs_->Record(key.str(), rows, fits, std::move(fn));
    return;
  }
  // The stream belongs to options_.device; the calling thread may have another current.
  absl::Status s = TM_CUDA_STATUS(cudaSetDevice(options_.device));
  if (s.ok()) s = fn(stream_, rows);
  if (!s.ok()) Fail(s);
}

void CudaBackend::FlushPending() {
  FlushRope();
  if (graphs_->recording()) {
    absl::Status s = TM_CUDA_STATUS(cudaSetDevice(options_.device));
    if (s.ok()) s = graphs_->Flush(stream_);
    if (!s.ok()) Fail(s);
  }
}

void CudaBackend::InvalidateGraphs() { graphs_->Clear(); }

absl::Status CudaBackend::ReserveScratch(GrowableDeviceBuffer& buffer, size_t bytes) {
  bool grew = false;
  TM_RETURN_IF_ERROR(buffer.Reserve(bytes, stream_, &grew));
  if (grew) InvalidateGraphs();
  return absl::OkStatus();
}

// --- memory -------------------------------------------------------------------------------

absl::StatusOr<TensorView> CudaBackend::Allocate(DType dtype, Shape shape) {
  if (dtype == DType::kQ8_0 && shape.NumElements() % kQ8_0BlockElems != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Allocate: Q8_0 shape ", shape.ToString(), " is not whole blocks"));
  }
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  TensorView t{nullptr, dtype, shape};
  TM_ASSIGN_OR_RETURN(t.data, allocator_.Allocate(t.NumBytes(), MemoryKind::kActivation));
  return t;
}

void CudaBackend::Free(const TensorView& t) {
  FlushPending();
  // Queued work may still use the buffer, and graphs may have baked its address in.
  const absl::Status sync = TM_CUDA_STATUS(cudaStreamSynchronize(stream_));
  if (!sync.ok()) Fail(sync);
  InvalidateGraphs();
  const absl::Status s = allocator_.Free(t.data);
  if (!s.ok()) Fail(s);
}

absl::Status CudaBackend::CopyHostToDevice(const void* src, void* dst, size_t bytes) {
  TM_RETURN_IF_ERROR(pinned_.Reserve(std::min(bytes, kCopyChunkBytes)));
  for (size_t off = 0; off < bytes; off += kCopyChunkBytes) {
    const size_t n = std::min(kCopyChunkBytes, bytes - off);
    std::memcpy(pinned_.data(), static_cast<const uint8_t*>(src) + off, n);
    TM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<uint8_t*>(dst) + off, pinned_.data(), n,
                                            cudaMemcpyHostToDevice, stream_));
    TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // pinned_ is reused
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::UploadConverted(const TensorView& host, DType device_dtype, void* dst) {
  if (host.dtype == device_dtype) return CopyHostToDevice(host.data, dst, host.NumBytes());
  const int64_t n = host.NumElements();
  TM_RETURN_IF_ERROR(ReserveScratch(staging_, DTypeBytes(host.dtype, std::min(n, kConvertChunkElems))));
  for (int64_t first = 0; first < n; first += kConvertChunkElems) {
    const int64_t count = std::min(kConvertChunkElems, n - first);
    const auto* src = static_cast<const uint8_t*>(host.data) + DTypeBytes(host.dtype, first);
    TM_RETURN_IF_ERROR(CopyHostToDevice(src, staging_.data(), DTypeBytes(host.dtype, count)));
    void* out = static_cast<uint8_t*>(dst) + DTypeBytes(device_dtype, first);
    if (host.dtype == DType::kQ8_0) {
      TM_CUDA_RETURN_IF_ERROR(kernels::LaunchDequantizeQ8_0(staging_.data(), count, out,
                                                            ToScalar(device_dtype), stream_));
    } else {
      TM_CUDA_RETURN_IF_ERROR(kernels::LaunchConvert(staging_.data(), ToScalar(host.dtype), out,
                                                     ToScalar(device_dtype), count, stream_));
    }
  }
  TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::StatusOr<TensorView> CudaBackend::UploadWeight(const TensorView& host) {
  if (host.data == nullptr && host.NumElements() > 0) {
    return absl::InvalidArgumentError("UploadWeight: tensor has no data");
  }
  if (!IsWeightDType(host.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadWeight: unsupported weight dtype ", std::string(DTypeName(host.dtype))));
  }
  if (host.dtype == DType::kQ8_0 && host.Cols() % kQ8_0BlockElems != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("UploadWeight: Q8_0 rows of ", host.Cols(), " are not whole blocks"));
  }
  FlushPending();
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  // Vectors (norm weights, biases) become F32; matrices the configured dtype, except that
  // F16/BF16 stay as they are (no precision lost) and Q8_0 becomes F16 (exact for most
  // int8 x fp16-scale products, unlike BF16) unless F32 is asked for.
  const bool is_vector = host.shape.rank <= 1 || host.Rows() == 1;
  DType device_dtype = options_.weight_dtype;
  if (is_vector) {
    device_dtype = DType::kF32;
  } else if (options_.weight_dtype != DType::kF32 && host.dtype != DType::kF32) {
    device_dtype = host.dtype == DType::kQ8_0 ? DType::kF16 : host.dtype;
  }
  TensorView t{nullptr, device_dtype, host.shape};
  TM_ASSIGN_OR_RETURN(t.data, allocator_.Allocate(t.NumBytes(), MemoryKind::kWeight));
  absl::Status s = UploadConverted(host, device_dtype, t.data);
  if (!s.ok()) {
    (void)allocator_.Free(t.data);
    return s;
  }
  return t;
}

DType CudaBackend::StoredKvDType(DType requested) const {
  return requested == DType::kF32 ? options_.f32_kv_cache_dtype : requested;
}

absl::Status CudaBackend::FreeKvCache() {
  if (kv_base_ == nullptr) return absl::OkStatus();
  TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  TM_RETURN_IF_ERROR(allocator_.Free(kv_base_));
  kv_base_ = nullptr;
  kv_spec_ = KvCacheSpec{};
  return absl::OkStatus();
}

absl::Status CudaBackend::AllocateKvCache(const KvCacheSpec& spec) {
  if (spec.num_layers < 1 || spec.num_blocks < 1 || spec.block_size < 1 ||
      spec.num_kv_heads < 1 || spec.head_dim < 1 || spec.head_dim > 512 ||
      static_cast<int64_t>(spec.num_blocks) * spec.block_size >= (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllocateKvCache: bad geometry (layers ", spec.num_layers, ", blocks ", spec.num_blocks,
        ", block_size ", spec.block_size, ", kv_heads ", spec.num_kv_heads, ", head_dim ",
        spec.head_dim, "; head_dim <= 512, blocks * block_size < 2^31)"));
  }
  if (spec.dtype != DType::kF32 && spec.dtype != DType::kF16 && spec.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllocateKvCache: dtype ", std::string(DTypeName(spec.dtype)), " (F32, F16, BF16)"));
  }
  FlushPending();
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  has_plan_ = false;
  InvalidateGraphs();
  TM_RETURN_IF_ERROR(FreeKvCache());
  KvCacheSpec stored = spec;
  stored.dtype = StoredKvDType(spec.dtype);
  kv_layer_bytes_ = DTypeBytes(stored.dtype, static_cast<int64_t>(spec.num_blocks) *
                                                 spec.block_size * spec.num_kv_heads *
                                                 spec.head_dim);
  kv_layer_bytes_ = (kv_layer_bytes_ + 255) / 256 * 256;
  absl::StatusOr<void*> base =
      allocator_.Allocate(kv_layer_bytes_ * 2 * spec.num_layers, MemoryKind::kKvCache);
  if (!base.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("AllocateKvCache: ", base.status().message()));
  }
  kv_base_ = *base;
  kv_spec_ = stored;
  return absl::OkStatus();
}

void CudaBackend::CopyToHost(const TensorView& src, void* dst) {
  FlushPending();
  // A gather whose wait failed left nothing worth copying (and the group is broken).
  if (!WaitForCollectives()) return;
  (void)cudaSetDevice(options_.device);
  const size_t bytes = src.NumBytes();
  if (bytes == 0) return;
  if (!Check(allocator_.BytesAvailable(src.data) >= bytes, "CopyToHost",
             "src is not memory of this backend")) {
    return;
  }
  auto copy = [&]() -> absl::Status {
    TM_RETURN_IF_ERROR(pinned_.Reserve(std::min(bytes, kCopyChunkBytes)));
    for (size_t off = 0; off < bytes; off += kCopyChunkBytes) {
      const size_t n = std::min(kCopyChunkBytes, bytes - off);
      TM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pinned_.data(),
                                              static_cast<const uint8_t*>(src.data) + off, n,
                                              cudaMemcpyDeviceToHost, stream_));
      TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      std::memcpy(static_cast<uint8_t*>(dst) + off, pinned_.data(), n);
    }
    return absl::OkStatus();
  };
  const absl::Status s = copy();
  if (!s.ok()) Fail(s);
}

void CudaBackend::CopyFromHost(const void* src, TensorView dst) {
  FlushPending();
  (void)cudaSetDevice(options_.device);
  const size_t bytes = dst.NumBytes();
  if (bytes == 0) return;
  if (!Check(allocator_.BytesAvailable(dst.data) >= bytes, "CopyFromHost",
             "dst is not memory of this backend")) {
    return;
  }
  const absl::Status s = CopyHostToDevice(src, dst.data, bytes);
  if (!s.ok()) Fail(s);
}

void CudaBackend::CopyKvBlocks(std::span<const std::pair<int32_t, int32_t>> copies) {
  constexpr std::string_view kOp = "CopyKvBlocks";
  FlushRope();
  if (copies.empty() || !status_.ok()) return;
  if (kv_base_ == nullptr) {
    return Fail(absl::FailedPreconditionError("CopyKvBlocks: no KV cache"));
  }
  std::vector<int32_t> pairs;
  pairs.reserve(2 * copies.size());
  for (const auto& [src, dst] : copies) {
    if (!Check(src >= 0 && dst >= 0 && src < kv_spec_.num_blocks && dst < kv_spec_.num_blocks,
               kOp, absl::StrCat("block ", src, " -> ", dst, " outside [0, ",
                                 kv_spec_.num_blocks, ")"))) {
      return;
    }
    pairs.push_back(src);
    pairs.push_back(dst);
  }
  (void)cudaSetDevice(options_.device);
  // Program order: ops already recorded for this step's graph run first. With none
  // recorded, the copy simply precedes the step's (later) graph launch.
  if (graphs_->recording() && graphs_->num_recorded() > 0) FlushPending();
  auto run = [&]() -> absl::Status {
    TM_RETURN_IF_ERROR(ReserveScratch(kv_copy_ws_, pairs.size() * sizeof(int32_t)));
    // From pageable memory: returns once `pairs` has been staged, so it may go.
    TM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(kv_copy_ws_.data(), pairs.data(),
                                            pairs.size() * sizeof(int32_t),
                                            cudaMemcpyHostToDevice, stream_));
    const int64_t block_bytes = DTypeBytes(
        kv_spec_.dtype, int64_t{kv_spec_.block_size} * kv_spec_.num_kv_heads * kv_spec_.head_dim);
    TM_CUDA_RETURN_IF_ERROR(kernels::LaunchCopyBlocks(
        kv_base_, static_cast<int64_t>(kv_layer_bytes_), 2 * kv_spec_.num_layers, block_bytes,
        static_cast<const int32_t*>(kv_copy_ws_.data()), static_cast<int>(copies.size()),
        stream_));
    return absl::OkStatus();
  };
  const absl::Status s = run();
  if (!s.ok()) Fail(s);
}

// --- per step -----------------------------------------------------------------------------

absl::Status CudaBackend::PlanStep(const BatchPlan& plan) {
  FlushPending();
  has_plan_ = false;
  if (kv_base_ == nullptr) {
    return absl::FailedPreconditionError("PlanStep: no KV cache (call AllocateKvCache)");
  }
  TM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  TM_ASSIGN_OR_RETURN(meta_, BuildStepMetadata(plan, kv_spec_));
  const int num_seqs = static_cast<int>(plan.sequences.size());
  const bool decode_only = meta_.max_query_len == 1 && num_seqs == plan.num_tokens() &&
                           static_cast<int>(plan.logits_rows.size()) == num_seqs;
  const int bucket = options_.use_cuda_graphs && decode_only && num_seqs > 0
                         ? GraphBucket(num_seqs, options_.max_graph_batch_size)
                         : 0;
  bool moved = false;
  TM_RETURN_IF_ERROR(steps_->Upload(plan, meta_, kv_spec_.block_size, bucket, stream_, &moved));
  if (moved) InvalidateGraphs();
  plan_ = plan;
  has_plan_ = true;
  if (bucket > 0) graphs_->Begin(num_seqs, bucket);
  return absl::OkStatus();
}

absl::Status CudaBackend::Finish() {
  FlushPending();
  (void)WaitForCollectives();
  const absl::Status sync = TM_CUDA_STATUS(cudaStreamSynchronize(stream_));
  if (!sync.ok()) Fail(sync);
  absl::Status s = std::move(status_);
  status_ = absl::OkStatus();
  return s;
}

}  // namespace tokenmill::cuda
