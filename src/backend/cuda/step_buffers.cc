#include "backend/cuda/step_buffers.h"

#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "tokenmill/core/status.h"

namespace tokenmill::cuda {
namespace {

int64_t Grow(int64_t needed, int64_t current, int64_t minimum) {
  if (needed <= current) return current;
  return std::max({needed, current * 2, minimum});
}

int64_t AlignUp(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

}  // namespace

StepBuffers::~StepBuffers() {
  if (upload_done_ != nullptr) cudaEventDestroy(upload_done_);
  if (device_ != nullptr) (void)allocator_->Free(device_);
}

int64_t StepBuffers::Layout() {
  const int64_t sizes[kNumFields] = {
      token_cap_, token_cap_, token_cap_, logits_cap_, seq_cap_, seq_cap_, seq_cap_,
      seq_cap_,   seq_cap_,   seq_cap_,   seq_cap_ * block_stride_};
  int64_t at = 0;
  for (int f = 0; f < kNumFields; ++f) {
    offset_[f] = at;
    at += AlignUp(sizes[f], 64);  // 256-byte aligned arrays
  }
  return at;
}

absl::Status StepBuffers::EnsureCapacity(int64_t tokens, int64_t logits, int64_t seqs,
                                         int64_t stride, cudaStream_t stream, bool* moved) {
  if (tokens <= token_cap_ && logits <= logits_cap_ && seqs <= seq_cap_ &&
      stride <= block_stride_ && device_ != nullptr) {
    return absl::OkStatus();
  }
  token_cap_ = Grow(tokens, token_cap_, 256);
  logits_cap_ = Grow(logits, logits_cap_, 256);
  seq_cap_ = Grow(seqs, seq_cap_, 256);
  int64_t s = std::max<int64_t>(block_stride_, 16);
  while (s < stride) s *= 2;
  block_stride_ = static_cast<int>(s);
  total_elems_ = Layout();
  if (device_ != nullptr) {
    // Queued kernels may still read the old arrays.
    TM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    TM_RETURN_IF_ERROR(allocator_->Free(device_));
    device_ = nullptr;
  }
  TM_ASSIGN_OR_RETURN(device_, allocator_->Allocate(total_elems_ * sizeof(int32_t),
                                                    MemoryKind::kWorkspace));
  if (upload_done_ != nullptr) TM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(upload_done_));
  TM_RETURN_IF_ERROR(host_.Reserve(total_elems_ * sizeof(int32_t)));
  *moved = true;
  return absl::OkStatus();
}

absl::Status StepBuffers::Upload(const BatchPlan& plan, const StepMetadata& meta,
                                 int block_size, int padded_seqs, cudaStream_t stream,
                                 bool* moved) {
  *moved = false;
  if (upload_done_ == nullptr) {
    TM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&upload_done_, cudaEventDisableTiming));
  }
  const int num_seqs = static_cast<int>(plan.sequences.size());
  const int padded = std::max(num_seqs, padded_seqs);
  const int pad = padded - num_seqs;
  const int64_t num_tokens = plan.num_tokens() + pad;
  const int64_t num_logits =
      pad > 0 ? padded : static_cast<int64_t>(plan.logits_rows.size());
  int64_t stride = 1;
  for (const BatchSequence& s : plan.sequences) {
    stride = std::max<int64_t>(stride, (s.context_len + block_size - 1) / block_size);
  }
  TM_RETURN_IF_ERROR(
      EnsureCapacity(num_tokens, std::max<int64_t>(num_logits, 1), padded, stride, stream, moved));
  // The previous upload may still be reading the pinned buffer.
  TM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(upload_done_));

  int32_t* h = static_cast<int32_t*>(host_.data());
  auto field = [&](Field f) { return h + offset_[f]; };
  const int32_t n = plan.num_tokens();
  std::copy(plan.token_ids.begin(), plan.token_ids.end(), field(kTokenIds));
  std::copy(plan.positions.begin(), plan.positions.end(), field(kPositions));
  for (int32_t t = 0; t < n; ++t) field(kSlots)[t] = static_cast<int32_t>(meta.slot_mapping[t]);
  std::fill_n(field(kTokenIds) + n, pad, 0);
  std::fill_n(field(kPositions) + n, pad, 0);
  std::fill_n(field(kSlots) + n, pad, -1);
  std::copy(plan.logits_rows.begin(), plan.logits_rows.end(), field(kLogitsRows));
  std::fill(field(kLogitsRows) + plan.logits_rows.size(), field(kLogitsRows) + num_logits, 0);

  num_decode_ = num_prefill_ = 0;
  max_prefill_query_len_ = max_query_len_ = max_decode_context_ = 0;
  for (int i = 0; i < padded; ++i) {
    const bool real = i < num_seqs;
    const int32_t q_len = real ? plan.sequences[i].num_query_tokens : 1;
    const int32_t ctx = real ? plan.sequences[i].context_len : 0;
    field(kQueryStart)[i] = real ? plan.sequences[i].query_start : n + (i - num_seqs);
    field(kNumQuery)[i] = q_len;
    field(kContextLen)[i] = ctx;
    field(kAllIds)[i] = i;
    if (q_len == 1) {
      field(kDecodeIds)[num_decode_++] = i;
      max_decode_context_ = std::max(max_decode_context_, ctx);
    } else {
      field(kPrefillIds)[num_prefill_++] = i;
      max_prefill_query_len_ = std::max(max_prefill_query_len_, q_len);
    }
    max_query_len_ = std::max(max_query_len_, q_len);
    if (real) {
      const int64_t needed = (ctx + block_size - 1) / block_size;
      std::copy_n(plan.sequences[i].block_table.begin(), needed,
                  field(kBlockTables) + static_cast<int64_t>(i) * block_stride_);
    }
  }
  num_seqs_ = padded;
  TM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_, h, total_elems_ * sizeof(int32_t),
                                          cudaMemcpyHostToDevice, stream));
  TM_CUDA_RETURN_IF_ERROR(cudaEventRecord(upload_done_, stream));
  return absl::OkStatus();
}

}  // namespace tokenmill::cuda
