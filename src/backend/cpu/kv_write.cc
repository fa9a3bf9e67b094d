// WriteKv: this step's K and V rows into their cache slots (converted to the cache dtype).
#include <algorithm>
#include <cstring>

#include "backend/cpu/ops.h"

namespace tokenmill::cpu {

void WriteKv(CpuContext& ctx, const KvCacheSpec& spec, const StepMetadata& meta, const float* k,
             const float* v, KvLayerView layer) {
  const int64_t width = static_cast<int64_t>(spec.num_kv_heads) * spec.head_dim;
  const int64_t num_tokens = static_cast<int64_t>(meta.slot_mapping.size());
  const size_t elem = DTypeBytes(spec.dtype, 1);
  auto write_row = [&](const float* src, void* cache, int64_t slot) {
    uint8_t* dst = static_cast<uint8_t*>(cache) + slot * width * elem;
    switch (spec.dtype) {
      case DType::kF16: {
        uint16_t* h = reinterpret_cast<uint16_t*>(dst);
        for (int64_t i = 0; i < width; ++i) h[i] = F32ToF16(src[i]);
        break;
      }
      case DType::kBF16: {
        uint16_t* h = reinterpret_cast<uint16_t*>(dst);
        for (int64_t i = 0; i < width; ++i) h[i] = F32ToBf16(src[i]);
        break;
      }
      default:
        std::memcpy(dst, src, width * sizeof(float));
    }
  };
  const int64_t rows_per_task = std::max<int64_t>(1, (1 << 14) / width);
  const int64_t num_tasks = (num_tokens + rows_per_task - 1) / rows_per_task;
  ctx.pool->Run(num_tasks, [&](int64_t task, int) {
    const int64_t end = std::min(num_tokens, (task + 1) * rows_per_task);
    for (int64_t t = task * rows_per_task; t < end; ++t) {
      write_row(k + t * width, layer.k, meta.slot_mapping[t]);
      write_row(v + t * width, layer.v, meta.slot_mapping[t]);
    }
  });
}

}  // namespace tokenmill::cpu
