// Which collective a rank called: the host communicators (loopback, TCP) match the ranks'
// calls by kind and count, and name the kind in their errors. The values go on the wire
// in the TCP communicator's requests.
#pragma once

#include <cstdint>

namespace tokenmill::parallel_internal {

enum class CollectiveKind : uint32_t {
  kAllReduceSum = 1,
  kAllGather = 2,
  kBroadcast = 3,
  kBarrier = 4,
};

inline const char* CollectiveKindName(CollectiveKind k) {
  switch (k) {
    case CollectiveKind::kAllReduceSum:
      return "AllReduceSum";
    case CollectiveKind::kAllGather:
      return "AllGather";
    case CollectiveKind::kBroadcast:
      return "Broadcast";
    case CollectiveKind::kBarrier:
      return "Barrier";
  }
  return "?";
}

}  // namespace tokenmill::parallel_internal
