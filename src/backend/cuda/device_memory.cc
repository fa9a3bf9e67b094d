#include "backend/cuda/device_memory.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend/cuda/cuda_check.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill::cuda {

DeviceAllocator::~DeviceAllocator() {
  for (const auto& [addr, block] : blocks_) {
    const cudaError_t err = cudaFree(reinterpret_cast<void*>(addr));
    if (err != cudaSuccess) spdlog::warn("cudaFree at shutdown: {}", cudaGetErrorString(err));
  }
}

absl::StatusOr<void*> DeviceAllocator::Allocate(size_t bytes, MemoryKind kind) {
  const size_t rounded = std::max<size_t>(256, (bytes + 255) / 256 * 256);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, rounded);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // out-of-memory is not sticky; clear it
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaMalloc of ", rounded, " bytes failed: ", cudaGetErrorString(err),
                     " (", in_use_[0] + in_use_[1] + in_use_[2] + in_use_[3],
                     " bytes already allocated by this backend)"));
  }
  blocks_.emplace(reinterpret_cast<uintptr_t>(p), Block{rounded, kind});
  in_use_[static_cast<int>(kind)] += rounded;
  return p;
}

absl::Status DeviceAllocator::Free(void* p) {
  auto it = blocks_.find(reinterpret_cast<uintptr_t>(p));
  TM_CHECK(it != blocks_.end(), "Free of a device pointer this backend did not allocate");
  in_use_[static_cast<int>(it->second.kind)] -= it->second.bytes;
  blocks_.erase(it);
  TM_CUDA_RETURN_IF_ERROR(cudaFree(p));
  return absl::OkStatus();
}

size_t DeviceAllocator::BytesAvailable(const void* p) const {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  auto it = blocks_.upper_bound(addr);
  if (it == blocks_.begin()) return 0;
  --it;
  const uintptr_t end = it->first + it->second.bytes;
  return addr < end ? end - addr : 0;
}

bool DeviceAllocator::Owns(const void* p) const {
  return blocks_.count(reinterpret_cast<uintptr_t>(p)) != 0;
}

GrowableDeviceBuffer::~GrowableDeviceBuffer() {
  if (data_ != nullptr) (void)allocator_->Free(data_);
}

absl::Status GrowableDeviceBuffer::Reserve(size_t bytes, cudaStream_t stream, bool* grew) {
  *grew = false;
  if (bytes <= capacity_) return absl::OkStatus();
  // Geometric growth keeps reallocations (each one invalidates captured graphs) rare.
  const size_t target = std::max(bytes, capacity_ + capacity_ / 2);
  if (data_ != nullptr) {
    TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    TM_RETURN_IF_ERROR(allocator_->Free(data_));
    data_ = nullptr;
    capacity_ = 0;
  }
  TM_ASSIGN_OR_RETURN(data_, allocator_->Allocate(target, MemoryKind::kWorkspace));
  capacity_ = target;
  *grew = true;
  return absl::OkStatus();
}

PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) (void)cudaFreeHost(data_);
}

absl::Status PinnedBuffer::Reserve(size_t bytes) {
  if (bytes <= capacity_) return absl::OkStatus();
  const size_t target = std::max(bytes, capacity_ * 2);
  if (data_ != nullptr) {
    TM_CUDA_RETURN_IF_ERROR(cudaFreeHost(data_));
    data_ = nullptr;
    capacity_ = 0;
  }
  TM_CUDA_RETURN_IF_ERROR(cudaMallocHost(&data_, target));
  capacity_ = target;
  return absl::OkStatus();
}

}  // namespace tokenmill::cuda
