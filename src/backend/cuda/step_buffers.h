// A step's metadata on the device: token ids, positions, cache slots, logits rows,
// per-sequence arrays and block tables, uploaded with one asynchronous copy from pinned
// memory. The arrays live at fixed addresses (they move only when a capacity grows), so a
// captured CUDA graph reads each new step's values in place.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "backend/cuda/device_memory.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/backend/step_metadata.h"

namespace tokenmill::cuda {

class StepBuffers {
 public:
  explicit StepBuffers(DeviceAllocator* allocator) : allocator_(allocator) {}
  ~StepBuffers();
  StepBuffers(const StepBuffers&) = delete;
  StepBuffers& operator=(const StepBuffers&) = delete;

  // Uploads `plan`. With padded_seqs > plan.sequences.size() (a decode-only plan run as
  // a graph bucket), sequences, token rows and logits rows are padded to padded_seqs:
  // padding sequences have context 0, padding tokens id 0 and no cache slot, padding
  // logits rows read row 0. *moved is set when an array changed address (captured
  // graphs that read it are stale).
  absl::Status Upload(const BatchPlan& plan, const StepMetadata& meta, int block_size,
                      int padded_seqs, cudaStream_t stream, bool* moved);

  const int32_t* token_ids() const { return Array(kTokenIds); }
  const int32_t* positions() const { return Array(kPositions); }
  const int32_t* slot_mapping() const { return Array(kSlots); }
  const int32_t* logits_rows() const { return Array(kLogitsRows); }
  const int32_t* query_start() const { return Array(kQueryStart); }
  const int32_t* num_query() const { return Array(kNumQuery); }
  const int32_t* context_len() const { return Array(kContextLen); }
  const int32_t* decode_ids() const { return Array(kDecodeIds); }
  const int32_t* prefill_ids() const { return Array(kPrefillIds); }
  const int32_t* all_ids() const { return Array(kAllIds); }
  const int32_t* block_tables() const { return Array(kBlockTables); }
  int block_table_stride() const { return block_stride_; }

  // Host-side facts about the uploaded step (padding included).
  int num_decode() const { return num_decode_; }
  int num_prefill() const { return num_prefill_; }
  int num_seqs() const { return num_seqs_; }
  int max_prefill_query_len() const { return max_prefill_query_len_; }
  int max_query_len() const { return max_query_len_; }
  int max_decode_context() const { return max_decode_context_; }

 private:
  enum Field {
    kTokenIds, kPositions, kSlots, kLogitsRows, kQueryStart, kNumQuery, kContextLen,
    kDecodeIds, kPrefillIds, kAllIds, kBlockTables, kNumFields
  };
  const int32_t* Array(Field f) const { return static_cast<const int32_t*>(device_) + offset_[f]; }
  // Recomputes offsets for the capacities; returns the total in int32 elements.
  int64_t Layout();
  absl::Status EnsureCapacity(int64_t tokens, int64_t logits, int64_t seqs, int64_t stride,
                              cudaStream_t stream, bool* moved);

  DeviceAllocator* allocator_;
  void* device_ = nullptr;
  PinnedBuffer host_;
  cudaEvent_t upload_done_ = nullptr;  // the pinned buffer is free once this completes
  int64_t token_cap_ = 0, logits_cap_ = 0, seq_cap_ = 0;
  int block_stride_ = 0;
  int64_t offset_[kNumFields] = {};
  int64_t total_elems_ = 0;
  int num_decode_ = 0, num_prefill_ = 0, num_seqs_ = 0;
  int max_prefill_query_len_ = 0, max_query_len_ = 0, max_decode_context_ = 0;
};

}  // namespace tokenmill::cuda
