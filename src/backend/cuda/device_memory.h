// Device and pinned-host memory for the CUDA backend.
//
// DeviceAllocator keeps a registry of its allocations so that the backend can ask how
// many bytes follow a pointer (a graph step pads row counts up to a bucket and must know
// the padded rows still fit the buffer) and how much memory each kind holds (memory
// planning). Not thread-safe: owned by one backend, driven by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tokenmill::cuda {

enum class MemoryKind { kActivation, kWeight, kKvCache, kWorkspace };
inline constexpr int kNumMemoryKinds = 4;

class DeviceAllocator {
 public:
  DeviceAllocator() = default;
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;
  ~DeviceAllocator();  // frees everything still allocated

  // cudaMalloc of at least `bytes` (rounded up to 256, minimum 256).
  absl::StatusOr<void*> Allocate(size_t bytes, MemoryKind kind);
  // Requires: p was returned by Allocate() and not freed. Does not synchronize: the
  // caller makes sure no queued work still uses p.
  absl::Status Free(void* p);
  // Bytes from p to the end of the allocation containing p; 0 when none does.
  size_t BytesAvailable(const void* p) const;
  // True when p is the start of a live allocation.
  bool Owns(const void* p) const;
  size_t bytes_in_use(MemoryKind kind) const { return in_use_[static_cast<int>(kind)]; }

 private:
  struct Block {
    size_t bytes;
    MemoryKind kind;
  };
  std::map<uintptr_t, Block> blocks_;
  size_t in_use_[kNumMemoryKinds] = {};
};

// A device buffer that only grows. Growing synchronizes `stream` before freeing the old
// memory, so work already queued keeps a valid pointer.
class GrowableDeviceBuffer {
 public:
  explicit GrowableDeviceBuffer(DeviceAllocator* allocator) : allocator_(allocator) {}
  GrowableDeviceBuffer(const GrowableDeviceBuffer&) = delete;
  GrowableDeviceBuffer& operator=(const GrowableDeviceBuffer&) = delete;
  ~GrowableDeviceBuffer();

  // Ensures capacity >= bytes; *grew tells whether the address changed.
  absl::Status Reserve(size_t bytes, cudaStream_t stream, bool* grew);
  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  DeviceAllocator* allocator_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Page-locked host memory (fast, asynchronous DMA) that only grows.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer();

  // Ensures capacity >= bytes. Requires: no DMA in flight on the old memory.
  absl::Status Reserve(size_t bytes);
  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace tokenmill::cuda
