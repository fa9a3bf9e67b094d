// Conformance: WriteKv + paged Attention on mixed steps (prefill chunks with and without
// cached context, decodes), shuffled block tables, GQA ratios 1/2/4, head_dim 8/64/128,
// F32/F16/BF16 caches, sliding windows. The cache is poisoned with NaN first, so reading
// any slot the step did not write shows up as NaN.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backend/backend_conformance.h"

namespace tokenmill::testing {
namespace {

struct AttentionCase {
  int group;  // query heads per KV head
  int head_dim;
  DType kv_dtype = DType::kF32;
  int block_size = 16;
  int sliding_window = 0;
};

constexpr int kKvHeads = 2;
constexpr int kLayer = 1;  // of 2: layer 0 holds unrelated data

// Dense causal attention in double for one sequence's new rows.
void AttentionRef(const AttentionCase& c, const SequenceShape& shape, const std::vector<float>& q,
                  int64_t q_row0, const std::vector<double>& keys,
                  const std::vector<double>& values, std::vector<double>* out) {
  const int heads = kKvHeads * c.group, hd = c.head_dim;
  const int64_t width = static_cast<int64_t>(kKvHeads) * hd;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int j = 0; j < shape.new_tokens; ++j) {
    const int pos = shape.cached + j;
    const int first = c.sliding_window > 0 ? std::max(0, pos - c.sliding_window + 1) : 0;
    for (int h = 0; h < heads; ++h) {
      const int kvh = h / c.group;
      const float* qh = q.data() + (q_row0 + j) * heads * hd + h * hd;
      std::vector<double> s(pos + 1);
      double mx = -1e300;
      for (int p = first; p <= pos; ++p) {
        double dot = 0.0;
        for (int d = 0; d < hd; ++d) dot += qh[d] * keys[p * width + kvh * hd + d];
        s[p] = dot * scale;
        mx = std::max(mx, s[p]);
      }
      double sum = 0.0;
      for (int p = first; p <= pos; ++p) sum += (s[p] = std::exp(s[p] - mx));
      double* o = out->data() + (q_row0 + j) * heads * hd + h * hd;
      for (int d = 0; d < hd; ++d) {
        double acc = 0.0;
        for (int p = first; p <= pos; ++p) acc += s[p] * values[p * width + kvh * hd + d];
        o[d] = acc / sum;
      }
    }
  }
}

class AttentionTest : public BackendConformanceTest {
 protected:
  void RunCase(const AttentionCase& c, const std::vector<SequenceShape>& shapes) {
    SCOPED_TRACE(absl::StrCat("group ", c.group, " head_dim ", c.head_dim, " kv ",
                              std::string(DTypeName(c.kv_dtype)), " block ", c.block_size,
                              " window ", c.sliding_window));
    const int heads = kKvHeads * c.group, hd = c.head_dim;
    const int64_t width = static_cast<int64_t>(kKvHeads) * hd;
    const PagedScenario sc =
        MakePagedScenario(rng(), {2, 0, c.block_size, kKvHeads, hd, c.kv_dtype}, shapes);
    AllocatePoisonedKvCache(sc.spec);

    // Every position's K/V, as float inputs and as the values the cache holds.
    std::vector<std::vector<float>> k(shapes.size()), v(shapes.size());
    std::vector<std::vector<double>> kq(shapes.size()), vq(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      const int64_t n = (shapes[i].cached + shapes[i].new_tokens) * width;
      k[i] = RandomFloats(rng(), n);
      v[i] = RandomFloats(rng(), n);
      for (int64_t e = 0; e < n; ++e) {
        kq[i].push_back(RoundToDType(k[i][e], c.kv_dtype));
        vq[i].push_back(RoundToDType(v[i][e], c.kv_dtype));
      }
    }
    // Rows [first, first + count) of sequence i, for each sequence of a plan.
    auto gather = [&](const std::vector<std::vector<float>>& src, const BatchPlan& plan,
                      const std::vector<int>& seq_of) {
      std::vector<float> rows;
      for (size_t s = 0; s < plan.sequences.size(); ++s) {
        const BatchSequence& bs = plan.sequences[s];
        const int64_t first = bs.context_len - bs.num_query_tokens;
        const std::vector<float>& all = src[seq_of[s]];
        rows.insert(rows.end(), all.begin() + first * width,
                    all.begin() + (first + bs.num_query_tokens) * width);
      }
      return rows;
    };
    std::vector<int> identity(shapes.size());
    for (size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<int>(i);

    if (!sc.history.sequences.empty()) {
      ASSERT_TRUE(backend().PlanStep(sc.history).ok());
      const int64_t t = sc.history.num_tokens();
      backend().WriteKv(kLayer, Upload(gather(k, sc.history, sc.history_seq), Shape{t, width}),
                        Upload(gather(v, sc.history, sc.history_seq), Shape{t, width}));
      ASSERT_TRUE(backend().Finish().ok());
    }
    ASSERT_TRUE(backend().PlanStep(sc.step).ok());
    const int64_t t = sc.step.num_tokens();
    // Layer 0 gets different K/V for the same slots: attention on layer 1 must not see it.
    backend().WriteKv(0, Upload(RandomFloats(rng(), t * width), Shape{t, width}),
                      Upload(RandomFloats(rng(), t * width), Shape{t, width}));
    backend().WriteKv(kLayer, Upload(gather(k, sc.step, identity), Shape{t, width}),
                      Upload(gather(v, sc.step, identity), Shape{t, width}));
    const std::vector<float> q = RandomFloats(rng(), t * heads * hd);
    AttentionParams params;
    params.num_heads = heads;
    params.num_kv_heads = kKvHeads;
    params.head_dim = hd;
    params.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    params.sliding_window = c.sliding_window;
    const TensorView out = Poisoned(Shape{t, heads * hd});
    backend().Attention(kLayer, Upload(q, Shape{t, heads * hd}), params, out);
    ASSERT_TRUE(backend().Finish().ok());

    std::vector<double> ref(t * heads * hd);
    for (size_t i = 0; i < shapes.size(); ++i) {
      AttentionRef(c, shapes[i], q, sc.step.sequences[i].query_start, kq[i], vq[i], &ref);
    }
    EXPECT_LT(RelativeError(Download(out), ref), tolerance("Attention", c.kv_dtype));
  }
};

// Prefill chunks without context (one spanning several query tiles), with context (across
// key chunks), decodes with short and long contexts, a one-token first step.
const std::vector<SequenceShape> kMixedStep = {
    {0, 37}, {21, 19}, {50, 1}, {0, 1}, {140, 1}, {0, 70}, {130, 9}, {3, 1},
};

TEST_P(AttentionTest, MixedStepGqaAndHeadDims) {
  for (int group : {1, 2, 4}) {
    for (int head_dim : {8, 64, 128}) RunCase({group, head_dim}, kMixedStep);
  }
}

TEST_P(AttentionTest, HalfPrecisionKvCache) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    RunCase({4, 64, dtype}, kMixedStep);
    RunCase({1, 128, dtype}, kMixedStep);
  }
}

TEST_P(AttentionTest, OddBlockSizesAndHeadDims) {
  RunCase({2, 64, DType::kF32, 5}, kMixedStep);
  RunCase({4, 8, DType::kF32, 1}, {{0, 7}, {9, 1}, {4, 3}});
  RunCase({2, 20, DType::kF32, 32}, kMixedStep);  // head_dim not a multiple of 8
}

TEST_P(AttentionTest, SlidingWindow) {
  RunCase({2, 64, DType::kF32, 16, 7}, kMixedStep);
  RunCase({1, 64, DType::kF32, 16, 40}, kMixedStep);
}

// Long decodes are split over the context (CPU: 256-key splits) and merged.
TEST_P(AttentionTest, LongDecodeContext) {
  RunCase({4, 128, DType::kF32}, {{1000, 1}, {777, 1}, {0, 1}});
  RunCase({2, 64, DType::kF16, 5}, {{600, 1}, {254, 1}, {255, 1}, {256, 1}});
  RunCase({2, 64, DType::kF32, 16, 100}, {{299, 1}, {520, 1}, {30, 1}});
}

// Copy-on-write: blocks copied to unused ids hold the same K/V in every layer, so the same
// step over the copies gives the same attention. The copies start out as NaN.
TEST_P(AttentionTest, CopyKvBlocksCopiesEveryLayer) {
  const int hd = 64, group = 2, heads = kKvHeads * group;
  const int64_t width = static_cast<int64_t>(kKvHeads) * hd;
  const PagedScenario sc = MakePagedScenario(rng(), {2, 0, 16, kKvHeads, hd, DType::kF32},
                                             {{40, 1}}, /*spare_blocks=*/4);
  AllocatePoisonedKvCache(sc.spec);
  const std::vector<int32_t> table = sc.step.sequences[0].block_table;
  std::vector<int32_t> spare;
  for (int32_t id = 0; id < sc.spec.num_blocks; ++id) {
    if (std::find(table.begin(), table.end(), id) == table.end()) spare.push_back(id);
  }
  ASSERT_GE(spare.size(), table.size());

  ASSERT_TRUE(backend().PlanStep(sc.history).ok());
  const int64_t n = sc.history.num_tokens();
  for (int layer = 0; layer < 2; ++layer) {
    backend().WriteKv(layer, Upload(RandomFloats(rng(), n * width), Shape{n, width}),
                      Upload(RandomFloats(rng(), n * width), Shape{n, width}));
  }
  ASSERT_TRUE(backend().Finish().ok());
  std::vector<std::pair<int32_t, int32_t>> copies;
  for (size_t b = 0; b < table.size(); ++b) copies.push_back({table[b], spare[b]});
  backend().CopyKvBlocks(copies);
  ASSERT_TRUE(backend().Finish().ok());

  const TensorView k_new = Upload(RandomFloats(rng(), width), Shape{1, width});
  const TensorView v_new = Upload(RandomFloats(rng(), width), Shape{1, width});
  const TensorView q = Upload(RandomFloats(rng(), heads * hd), Shape{1, heads * hd});
  const AttentionParams params{heads, kKvHeads, hd, 0.125f, 0};
  std::vector<std::vector<float>> outs;  // [original, copy] x [layer 0, layer 1]
  for (bool use_copy : {false, true}) {
    BatchPlan step = sc.step;
    if (use_copy) {
      for (size_t b = 0; b < table.size(); ++b) step.sequences[0].block_table[b] = spare[b];
    }
    ASSERT_TRUE(backend().PlanStep(step).ok());
    for (int layer = 0; layer < 2; ++layer) {
      backend().WriteKv(layer, k_new, v_new);
      const TensorView out = Poisoned(Shape{1, heads * hd});
      backend().Attention(layer, q, params, out);
      outs.push_back(Download(out));
    }
    ASSERT_TRUE(backend().Finish().ok());
  }
  for (int layer = 0; layer < 2; ++layer) {
    const std::vector<double> original(outs[layer].begin(), outs[layer].end());
    EXPECT_LT(RelativeError(outs[2 + layer], original), tolerance("Attention")) << layer;
  }
  EXPECT_GT(RelativeError(outs[1], std::vector<double>(outs[0].begin(), outs[0].end())), 1e-3)
      << "the two layers should hold different data";

  backend().CopyKvBlocks(std::vector<std::pair<int32_t, int32_t>>{{0, sc.spec.num_blocks}});
  EXPECT_EQ(backend().Finish().code(), absl::StatusCode::kInvalidArgument);
  backend().CopyKvBlocks(
      std::vector<std::pair<int32_t, int32_t>>{{spare[0], spare[1]}, {spare[1], spare[2]}});
  EXPECT_EQ(backend().Finish().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, AttentionTest, ::testing::ValuesIn(ConformanceBackends()),
                         BackendCaseName);

}  // namespace
}  // namespace tokenmill::testing
