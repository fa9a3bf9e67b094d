// What the leader of a multi-process tensor-parallel group tells its workers (private to
// engine/): the group's settings once, then one message per step. Bytes, sent with
// Communicator::Broadcast from rank 0 over the group's TCP links.
//
// Every message is a 16-byte header {magic, type, payload bytes} broadcast first, then
// (when non-empty) the payload. Integers are little-endian; decoding checks every length,
// so a garbled or foreign message is DATA_LOSS, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/backend/backend.h"
#include "tokenmill/kv/kv_cache_manager.h"
#include "tokenmill/model/weights.h"

namespace tokenmill::wire {

enum class MessageType : uint32_t {
  kConfig = 1,     // payload: GroupConfig
  kStep = 2,       // payload: a BatchPlan and its block copies
  kHeartbeat = 3,  // no payload: the leader is alive and idle
  kStop = 4,       // no payload: the leader is done; workers exit cleanly
};
const char* MessageTypeName(MessageType type);

constexpr int64_t kHeaderBytes = 16;
struct Header {
  MessageType type = MessageType::kHeartbeat;
  int64_t payload_bytes = 0;
};
void EncodeHeader(const Header& header, char out[kHeaderBytes]);
absl::StatusOr<Header> DecodeHeader(const char in[kHeaderBytes]);

// The settings every rank must share, and what identifies the model, so that a worker
// that loaded another checkpoint is refused rather than computing garbage.
struct GroupConfig {
  std::string backend;  // "cpu" or "cuda"
  bool use_nccl = false;
  std::string nccl_unique_id;  // NcclGetUniqueId() on the leader, when use_nccl
  int32_t num_kv_blocks = 0;
  int32_t block_size = 0;
  int32_t max_num_tokens = 0;
  int32_t max_num_logits = 0;
  std::string model;  // ModelFingerprint() of the whole model
};
std::string EncodeGroupConfig(const GroupConfig& config);
absl::StatusOr<GroupConfig> DecodeGroupConfig(std::string_view bytes);

// The architecture numbers and a hash of sampled weight bytes, as text ("name vocab=...
// weights=..."), so that a mismatch can be printed.
std::string ModelFingerprint(const LoadedModel& model);

std::string EncodeStep(const BatchPlan& plan, std::span<const BlockCopy> copies);
// `copies` gets {src, dst} pairs, as Backend::CopyKvBlocks takes them.
absl::Status DecodeStep(std::string_view bytes, BatchPlan* plan,
                        std::vector<std::pair<int32_t, int32_t>>* copies);

}  // namespace tokenmill::wire
