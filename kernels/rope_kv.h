// Launcher for rotary position embedding fused with the paged KV-cache write.
//
// One launch does any subset of: rotate q in place, rotate k in place, write k and v
// into the paged cache. Doing the rotation and the cache write in one pass saves a
// round trip of k through memory on every layer.
#pragma once

#include "kernels/types.h"

namespace tokenmill::kernels {

struct RopeKvArgs {
  int64_t num_tokens = 0;
  int num_heads = 0;     // query heads
  int num_kv_heads = 0;  // key/value heads
  int head_dim = 0;
  ScalarType act_type = ScalarType::kF32;  // q, k, v

  // Rotation. inv_freq == nullptr: no rotation. Pairs are (i, i + rotary_dim/2) when
  // is_neox, else (2i, 2i + 1), for i < rotary_dim/2; dims >= rotary_dim pass through.
  void* q = nullptr;  // [num_tokens, num_heads * head_dim]; rotated when rotate_q
  void* k = nullptr;  // [num_tokens, num_kv_heads * head_dim]; rotated when rotate_k
  bool rotate_q = false;
  bool rotate_k = false;
  const float* inv_freq = nullptr;   // [rotary_dim / 2]
  const int32_t* positions = nullptr;  // [num_tokens]
  int rotary_dim = 0;
  bool is_neox = true;

  // Cache write. k_cache == nullptr: none. The caches are [num_slots, num_kv_heads,
  // head_dim] of cache_type (a slot is block * block_size + offset). Tokens with a
  // negative slot are not written. The k written is the rotated k when rotate_k.
  const void* v = nullptr;  // [num_tokens, num_kv_heads * head_dim]
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  ScalarType cache_type = ScalarType::kBF16;
  const int32_t* slot_mapping = nullptr;  // [num_tokens]
};

// Requires: head_dim <= 1024, rotary_dim even and <= head_dim.
cudaError_t LaunchRopeKv(const RopeKvArgs& args, cudaStream_t stream);

}  // namespace tokenmill::kernels
