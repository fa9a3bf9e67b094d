#include "backend/backend_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "tokenmill/core/dtype.h"

namespace tokenmill::testing {

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float scale) {
  std::uniform_real_distribution<float> magnitude(scale / 64, scale);
  std::bernoulli_distribution negative(0.5);
  std::vector<float> v(n);
  for (float& x : v) x = negative(rng) ? -magnitude(rng) : magnitude(rng);
  return v;
}

TensorView HostWeight::view() const {
  TensorView t;
  t.data = const_cast<uint8_t*>(bytes.data());
  t.dtype = dtype;
  t.shape = Shape{rows, cols};
  return t;
}

HostWeight RandomWeight(std::mt19937& rng, DType dtype, int64_t rows, int64_t cols, float scale) {
  HostWeight w;
  w.dtype = dtype;
  w.rows = rows;
  w.cols = cols;
  const std::vector<float> f = RandomFloats(rng, rows * cols, scale);
  w.values.resize(f.size());
  w.bytes.resize(DTypeBytes(dtype, rows * cols));
  switch (dtype) {
    case DType::kF32:
      std::memcpy(w.bytes.data(), f.data(), w.bytes.size());
      for (size_t i = 0; i < f.size(); ++i) w.values[i] = f[i];
      break;
    case DType::kF16:
    case DType::kBF16: {
      uint16_t* h = reinterpret_cast<uint16_t*>(w.bytes.data());
      for (size_t i = 0; i < f.size(); ++i) {
        h[i] = dtype == DType::kF16 ? F32ToF16(f[i]) : F32ToBf16(f[i]);
        w.values[i] = dtype == DType::kF16 ? F16ToF32(h[i]) : Bf16ToF32(h[i]);
      }
      break;
    }
    case DType::kQ8_0:
      for (int64_t b = 0; b < rows * cols / kQ8_0BlockElems; ++b) {
        const float* x = f.data() + b * kQ8_0BlockElems;
        uint8_t* block = w.bytes.data() + b * kQ8_0BlockBytes;
        float amax = 0.0f;
        for (int i = 0; i < kQ8_0BlockElems; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float d = amax / 127.0f;
        const uint16_t d16 = F32ToF16(d);
        std::memcpy(block, &d16, 2);
        const double dd = F16ToF32(d16);
        for (int i = 0; i < kQ8_0BlockElems; ++i) {
          const int q = static_cast<int>(std::lround(x[i] / d));
          const int8_t qi = static_cast<int8_t>(std::clamp(q, -127, 127));
          block[2 + i] = static_cast<uint8_t>(qi);
          w.values[b * kQ8_0BlockElems + i] = dd * qi;
        }
      }
      break;
    default:
      break;
  }
  return w;
}

float RoundToDType(float x, DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return F16ToF32(F32ToF16(x));
    case DType::kBF16:
      return Bf16ToF32(F32ToBf16(x));
    default:
      return x;
  }
}

double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    diff += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-300);
}

namespace {

void AddSequence(BatchPlan* plan, int query_tokens, int context_len,
                 const std::vector<int32_t>& table, std::mt19937& rng) {
  BatchSequence seq;
  seq.query_start = plan->num_tokens();
  seq.num_query_tokens = query_tokens;
  seq.context_len = context_len;
  seq.block_table = table;
  for (int j = 0; j < query_tokens; ++j) {
    plan->token_ids.push_back(static_cast<int32_t>(rng() % 1000));
    plan->positions.push_back(context_len - query_tokens + j);
  }
  plan->logits_rows.push_back(plan->num_tokens() - 1);
  plan->sequences.push_back(std::move(seq));
}

}  // namespace

PagedScenario MakePagedScenario(std::mt19937& rng, KvCacheSpec spec,
                                const std::vector<SequenceShape>& shapes, int spare_blocks) {
  const int bs = spec.block_size;
  int needed = 0;
  for (const SequenceShape& s : shapes) needed += (s.cached + s.new_tokens + bs - 1) / bs;
  spec.num_blocks = needed + spare_blocks;
  std::vector<int32_t> ids(spec.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  PagedScenario sc;
  sc.spec = spec;
  sc.shapes = shapes;
  size_t next = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const int context = shapes[i].cached + shapes[i].new_tokens;
    std::vector<int32_t> table(ids.begin() + next, ids.begin() + next + (context + bs - 1) / bs);
    next += table.size();
    if (shapes[i].cached > 0) {
      // The history step holds only the cached blocks, as the engine's table would then.
      std::vector<int32_t> cached_table(table.begin(),
                                        table.begin() + (shapes[i].cached + bs - 1) / bs);
      AddSequence(&sc.history, shapes[i].cached, shapes[i].cached, cached_table, rng);
      sc.history_seq.push_back(static_cast<int>(i));
    }
    AddSequence(&sc.step, shapes[i].new_tokens, context, table, rng);
  }
  return sc;
}

}  // namespace tokenmill::testing
