// Host-side helpers of the backend tests: random data, weights in every dtype with their
// exact dequantised values, error norms, and paged-KV scenarios with block tables.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tokenmill/backend/backend.h"
#include "tokenmill/core/tensor.h"

namespace tokenmill::testing {

// Uniform in [-scale, -scale/64] U [scale/64, scale]: never zero, never tiny.
std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float scale = 1.0f);

// A weight [rows, cols] stored in `dtype`, plus the exact value of every element.
struct HostWeight {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> bytes;
  std::vector<double> values;  // dequantised, row-major
  TensorView view() const;
};
// Random weight; Q8_0 uses GGUF's quantiser (d = amax / 127 in fp16, q = round(x / d)).
HostWeight RandomWeight(std::mt19937& rng, DType dtype, int64_t rows, int64_t cols,
                        float scale = 1.0f);

// The value `x` takes once stored in a KV cache of `dtype` (F32, F16, BF16).
float RoundToDType(float x, DType dtype);

// ||out - ref|| / ||ref||. Any NaN or Inf in out yields +Inf.
double RelativeError(const std::vector<float>& out, const std::vector<double>& ref);

// A ragged step over a paged KV cache: each sequence has `cached` tokens already in the
// cache and `new_tokens` in this step. Block tables draw from shuffled block ids, so
// neighbouring positions live in unrelated blocks.
struct SequenceShape {
  int cached = 0;
  int new_tokens = 1;
};
struct PagedScenario {
  KvCacheSpec spec;
  std::vector<SequenceShape> shapes;
  BatchPlan history;             // writes the cached tokens (sequences with cached > 0 only)
  BatchPlan step;                // the step under test: cached + new tokens of every sequence
  std::vector<int> history_seq;  // plan.sequences index in `history` -> scenario sequence
};
// Requires: spec.block_size, num_kv_heads, head_dim, num_layers set; fills num_blocks
// (with `spare_blocks` unused ones) and both plans. logits_rows = last row of each sequence.
PagedScenario MakePagedScenario(std::mt19937& rng, KvCacheSpec spec,
                                const std::vector<SequenceShape>& shapes, int spare_blocks = 3);

}  // namespace tokenmill::testing
