// CpuBackend: owns memory, the step plan and the sticky error; checks every op's
// arguments and hands raw pointers to the drivers in ops.h.
#include "tokenmill/backend/cpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "backend/cpu/cpu_backend_impl.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace cpu {
namespace {

const KernelTable* SelectKernels(CpuIsa isa) {
  if (isa == CpuIsa::kAuto) {
    if (const KernelTable* avx512 = Avx512Kernels(); avx512 != nullptr) return avx512;
  }
  if (isa == CpuIsa::kAuto || isa == CpuIsa::kAvx2) {
    if (const KernelTable* avx2 = Avx2Kernels(); avx2 != nullptr) return avx2;
  }
  return &GenericKernels();
}

// KV caches are read as short rows far apart (one per token and head), so 4 KiB pages
// cost a TLB miss per row; large buffers ask for transparent huge pages.
void* AllocateLarge(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  if (bytes < kHugePage) return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
  return p;
}

bool SameRope(const RopeParams& a, const RopeParams& b) {
  return a.head_dim == b.head_dim && a.rotary_dim == b.rotary_dim && a.theta == b.theta &&
         a.is_neox == b.is_neox && a.scaling == b.scaling && a.factor == b.factor &&
         a.low_freq_factor == b.low_freq_factor && a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings;
}

}  // namespace

float* ScratchBuffer::Get(size_t num_floats) {
  if (num_floats > capacity_) {
    const size_t bytes = (num_floats * sizeof(float) + 63) / 64 * 64;
    data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    TM_CHECK(data_ != nullptr, "out of memory for ", bytes, " bytes of scratch");
    capacity_ = num_floats;
  }
  return data_.get();
}

CpuBackend::CpuBackend(const CpuBackendOptions& options) {
  int threads = options.num_threads;
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<ThreadPool>(threads);
  ctx_.kernels = SelectKernels(options.isa);
  ctx_.pool = pool_.get();
  ctx_.scratch.resize(threads);
}

CpuBackend::~CpuBackend() = default;

void CpuBackend::Fail(absl::Status status) {
  if (status_.ok()) status_ = std::move(status);
}

bool CpuBackend::Check(bool ok, std::string_view op, const std::string& what) {
  if (!ok) Fail(absl::InvalidArgumentError(absl::StrCat(std::string(op), ": ", what)));
  return ok;
}

bool CpuBackend::CheckF32(std::string_view op, std::string_view name, const TensorView& t,
                          int64_t rows, int64_t cols) {
  const std::string n(name);
  if (!Check(t.data != nullptr, op, n + " has no data")) return false;
  if (!Check(t.dtype == DType::kF32, op,
             absl::StrCat(n, " is ", std::string(DTypeName(t.dtype)), ", expected F32"))) {
    return false;
  }
  const bool rows_ok = rows < 0 || t.Rows() == rows;
  const bool cols_ok = cols < 0 || t.Cols() == cols;
  return Check(rows_ok && cols_ok, op,
               absl::StrCat(n, " has shape ", t.shape.ToString(), ", expected [",
                            rows < 0 ? std::string("*") : absl::StrCat(rows), ", ",
                            cols < 0 ? std::string("*") : absl::StrCat(cols), "]"));
}

bool CpuBackend::CheckPlan(std::string_view op) {
  if (has_plan_) return true;
  Fail(absl::FailedPreconditionError(absl::StrCat(std::string(op), ": no step planned")));
  return false;
}

// --- memory -----------------------------------------------------------------------------

absl::StatusOr<TensorView> CpuBackend::Allocate(DType dtype, Shape shape) {
  if (dtype == DType::kQ8_0 && shape.NumElements() % kQ8_0BlockElems != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Allocate: Q8_0 shape ", shape.ToString(), " is not whole blocks"));
  }
  TensorView t{nullptr, dtype, shape};
  const size_t bytes = std::max<size_t>(64, (t.NumBytes() + 63) / 64 * 64);
  void* data = std::aligned_alloc(64, bytes);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("Allocate: ", bytes, " bytes"));
  }
  t.data = data;
  allocations_.emplace(data, Allocation(data));
  return t;
}

void CpuBackend::Free(const TensorView& t) {
  const size_t erased = allocations_.erase(t.data);
  TM_CHECK(erased == 1, "Free of a tensor this backend did not allocate");
}

absl::StatusOr<TensorView> CpuBackend::UploadWeight(const TensorView& host) {
  if (host.data == nullptr && host.NumElements() > 0) {
    return absl::InvalidArgumentError("UploadWeight: tensor has no data");
  }
  switch (host.dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return host;
    case DType::kQ8_0:
      if (host.Cols() % kQ8_0BlockElems != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("UploadWeight: Q8_0 rows of ", host.Cols(), " are not whole blocks"));
      }
      return host;
    default:
      return absl::InvalidArgumentError(absl::StrCat("UploadWeight: unsupported weight dtype ",
                                                     std::string(DTypeName(host.dtype))));
  }
}

absl::Status CpuBackend::AllocateKvCache(const KvCacheSpec& spec) {
  if (spec.num_layers < 1 || spec.num_blocks < 1 || spec.block_size < 1 || spec.num_kv_heads < 1 ||
      spec.head_dim < 1 || spec.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllocateKvCache: bad geometry (layers ", spec.num_layers, ", blocks ", spec.num_blocks,
        ", block_size ", spec.block_size, ", kv_heads ", spec.num_kv_heads, ", head_dim ",
        spec.head_dim, "; head_dim <= ", kMaxHeadDim, ")"));
  }
  if (spec.dtype != DType::kF32 && spec.dtype != DType::kF16 && spec.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllocateKvCache: dtype ", std::string(DTypeName(spec.dtype)), " (F32, F16, BF16)"));
  }
  kv_layers_.clear();
  has_plan_ = false;
  const size_t bytes =
      DTypeBytes(spec.dtype, static_cast<int64_t>(spec.num_blocks) * spec.block_size *
                                 spec.num_kv_heads * spec.head_dim);
  for (int l = 0; l < spec.num_layers; ++l) {
    Allocation k(AllocateLarge(bytes));
    Allocation v(AllocateLarge(bytes));
    if (k == nullptr || v == nullptr) {
      kv_layers_.clear();
      return absl::ResourceExhaustedError(
          absl::StrCat("AllocateKvCache: ", 2 * bytes * spec.num_layers, " bytes"));
    }
    kv_layers_.push_back({std::move(k), std::move(v)});
  }
  kv_spec_ = spec;
  return absl::OkStatus();
}

void CpuBackend::CopyToHost(const TensorView& src, void* dst) {
  if (src.NumBytes() > 0) std::memcpy(dst, src.data, src.NumBytes());
}

void CpuBackend::CopyFromHost(const void* src, TensorView dst) {
  if (dst.NumBytes() > 0) std::memcpy(dst.data, src, dst.NumBytes());
}

// Ops have finished when they return, so a host collective may read and write the
// tensors where they are.
absl::Status CpuBackend::AllReduceSum(CollectiveGroup& group, TensorView t) {
  if (group.device_stream() != nullptr) {
    return absl::FailedPreconditionError(
        "AllReduceSum: the cpu backend takes host communicators, not device ones (NCCL)");
  }
  if (t.dtype != DType::kF32 || (t.data == nullptr && t.NumElements() > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduceSum: tensor ", t.shape.ToString(), " must be F32 with data"));
  }
  return group.AllReduceSum(t.As<float>(), t.NumElements());
}

absl::Status CpuBackend::AllGather(CollectiveGroup& group, const TensorView& send,
                                   TensorView recv) {
  if (group.device_stream() != nullptr) {
    return absl::FailedPreconditionError(
        "AllGather: the cpu backend takes host communicators, not device ones (NCCL)");
  }
  const int64_t count = send.NumElements();
  const bool ok = send.dtype == DType::kF32 && recv.dtype == DType::kF32 &&
                  recv.NumElements() == group.world_size() * count &&
                  (count == 0 || (send.data != nullptr && recv.data != nullptr));
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllGather: send ", send.shape.ToString(), " and recv ", recv.shape.ToString(),
                     " must be F32 with recv holding ", group.world_size(), " x send's elements"));
  }
  return group.AllGather(send.As<float>(), count, recv.As<float>());
}

void CpuBackend::CopyKvBlocks(std::span<const std::pair<int32_t, int32_t>> copies) {
  if (copies.empty() || !status_.ok()) return;
  if (kv_layers_.empty()) {
    Fail(absl::FailedPreconditionError("CopyKvBlocks: no KV cache"));
    return;
  }
  // All checked before any copy, so a bad request leaves the cache untouched.
  for (const auto& [src, dst] : copies) {
    if (src < 0 || dst < 0 || src >= kv_spec_.num_blocks || dst >= kv_spec_.num_blocks) {
      Fail(absl::InvalidArgumentError(absl::StrCat("CopyKvBlocks: block ", src, " -> ", dst,
                                                   " outside [0, ", kv_spec_.num_blocks, ")")));
      return;
    }
    for (const auto& other : copies) {
      if (other.first == dst) {
        Fail(absl::InvalidArgumentError(
            absl::StrCat("CopyKvBlocks: block ", dst, " is both a destination and a source")));
        return;
      }
    }
  }
  const size_t block_bytes = DTypeBytes(
      kv_spec_.dtype, int64_t{kv_spec_.block_size} * kv_spec_.num_kv_heads * kv_spec_.head_dim);
  for (const auto& [src, dst] : copies) {
    for (KvLayer& layer : kv_layers_) {
      for (uint8_t* base :
           {static_cast<uint8_t*>(layer.k.get()), static_cast<uint8_t*>(layer.v.get())}) {
        std::memcpy(base + dst * block_bytes, base + src * block_bytes, block_bytes);
      }
    }
  }
}

// --- per step ---------------------------------------------------------------------------

absl::Status CpuBackend::PlanStep(const BatchPlan& plan) {
  has_plan_ = false;
  if (kv_layers_.empty()) {
    return absl::FailedPreconditionError("PlanStep: no KV cache (call AllocateKvCache)");
  }
  TM_ASSIGN_OR_RETURN(meta_, BuildStepMetadata(plan, kv_spec_));
  plan_ = plan;
  has_plan_ = true;
  rope_cache_valid_ = false;
  return absl::OkStatus();
}

absl::Status CpuBackend::Finish() {
  absl::Status s = std::move(status_);
  status_ = absl::OkStatus();
  return s;
}

const std::vector<float>& CpuBackend::RopeCosSin(const RopeParams& params) {
  if (!rope_cache_valid_ || !SameRope(params, rope_params_)) {
    RopeTable(RopeInverseFrequencies(params), plan_.positions.data(), plan_.num_tokens(),
              &rope_cos_sin_);
    rope_params_ = params;
    rope_cache_valid_ = true;
  }
  return rope_cos_sin_;
}

}  // namespace cpu

std::unique_ptr<Backend> MakeCpuBackend(const CpuBackendOptions& options) {
  return std::make_unique<cpu::CpuBackend>(options);
}

std::string_view CpuKernelSetName(CpuIsa isa) { return cpu::SelectKernels(isa)->name; }

}  // namespace tokenmill
