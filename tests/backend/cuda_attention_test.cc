// The fast attention kernels (split-K decode, tensor-core prefill) against the generic
// fp32 kernel on shapes the conformance suite is too small for: long contexts cut into
// many splits, query chunks spanning many tiles, every GQA packing (including groups that
// do not divide the 64-row tile), sliding windows, F16 caches and BF16 activations. Both
// backends hold the same BF16/F16 cache; q is pre-rounded to the cache type, so the only
// difference left is the fast kernels' rounding of probabilities.
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "backend/backend_test_util.h"
#include "backend/cuda_test_util.h"
#include "gtest/gtest.h"

namespace tokenmill::testing {
namespace {

constexpr int kKvHeads = 2;

struct Case {
  int group;
  int head_dim;
  std::vector<SequenceShape> seqs;
  int window = 0;
  DType kv = DType::kBF16;
  DType act = DType::kF32;
};

// Runs the case's step on `b` and returns the attention output as floats.
std::vector<float> RunAttention(Backend& b, const Case& c, const PagedScenario& sc,
                                const std::vector<std::vector<float>>& k,
                                const std::vector<std::vector<float>>& v,
                                const std::vector<float>& q) {
  const int64_t width = int64_t{kKvHeads} * c.head_dim;
  const int heads = kKvHeads * c.group;
  EXPECT_TRUE(b.AllocateKvCache(sc.spec).ok());
  auto rows_of = [&](const std::vector<std::vector<float>>& src, const BatchPlan& plan,
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
  if (!sc.history.sequences.empty()) {
    EXPECT_TRUE(b.PlanStep(sc.history).ok());
    const int64_t t = sc.history.num_tokens();
    b.WriteKv(0, UploadF32(b, rows_of(k, sc.history, sc.history_seq), Shape{t, width}),
              UploadF32(b, rows_of(v, sc.history, sc.history_seq), Shape{t, width}));
    EXPECT_TRUE(b.Finish().ok());
  }
  std::vector<int> identity(c.seqs.size());
  for (size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<int>(i);
  EXPECT_TRUE(b.PlanStep(sc.step).ok());
  const int64_t t = sc.step.num_tokens();
  b.WriteKv(0, UploadF32(b, rows_of(k, sc.step, identity), Shape{t, width}),
            UploadF32(b, rows_of(v, sc.step, identity), Shape{t, width}));
  const Shape shape{t, int64_t{heads} * c.head_dim};
  TensorView qd, out;
  if (c.act == DType::kBF16) {
    qd = *b.Allocate(DType::kBF16, shape);
    out = *b.Allocate(DType::kBF16, shape);
    const std::vector<uint16_t> qb = ToBf16(q);
    b.CopyFromHost(qb.data(), qd);
    const std::vector<uint16_t> nan(shape.NumElements(), 0x7fc0);
    b.CopyFromHost(nan.data(), out);
  } else {
    qd = UploadF32(b, q, shape);
    out = UploadF32(b, std::vector<float>(shape.NumElements(), NAN), shape);
  }
  const AttentionParams params{heads, kKvHeads, c.head_dim,
                               1.0f / std::sqrt(static_cast<float>(c.head_dim)), c.window};
  b.Attention(0, qd, params, out);
  EXPECT_TRUE(b.Finish().ok());
  std::vector<uint8_t> raw(out.NumBytes());
  b.CopyToHost(out, raw.data());
  EXPECT_TRUE(b.Finish().ok());
  return DecodeFloats(raw, c.act);
}

void CompareFastWithGeneric(const Case& c, uint32_t seed) {
  SCOPED_TRACE(absl::StrCat("group ", c.group, " head_dim ", c.head_dim, " window ", c.window,
                            " kv ", std::string(DTypeName(c.kv)), " act ",
                            std::string(DTypeName(c.act))));
  std::mt19937 rng(seed);
  const int64_t width = int64_t{kKvHeads} * c.head_dim;
  const PagedScenario sc =
      MakePagedScenario(rng, {1, 0, 16, kKvHeads, c.head_dim, c.kv}, c.seqs);
  std::vector<std::vector<float>> k(c.seqs.size()), v(c.seqs.size());
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    const int64_t n = (c.seqs[i].cached + c.seqs[i].new_tokens) * width;
    k[i] = RandomFloats(rng, n);
    v[i] = RandomFloats(rng, n);
  }
  const int64_t q_elems = sc.step.num_tokens() * int64_t{kKvHeads} * c.group * c.head_dim;
  // Rounded to the cache type so that the fast kernels' operand rounding is exact.
  const std::vector<float> q = RoundAll(RandomFloats(rng, q_elems), c.kv);

  CudaBackendOptions generic;
  generic.use_fast_attention = false;
  auto fast_b = MakeCudaBackend({});
  auto ref_b = MakeCudaBackend(generic);
  ASSERT_TRUE(fast_b.ok() && ref_b.ok()) << fast_b.status() << ref_b.status();
  const std::vector<float> got = RunAttention(**fast_b, c, sc, k, v, q);
  const std::vector<float> want = RunAttention(**ref_b, c, sc, k, v, q);
  const std::vector<double> ref(want.begin(), want.end());
  ASSERT_LT(RelativeError(want, ref), 1.0);  // the reference itself is finite
  EXPECT_LT(RelativeError(got, ref), c.act == DType::kBF16 ? 1e-2 : 5e-3);
}

TEST(CudaAttentionTest, SplitKDecodeOverLongContexts) {
  TM_REQUIRE_GPU();
  CompareFastWithGeneric({4, 128, {{4000, 1}, {2500, 1}, {129, 1}, {0, 1}}}, 1);
  CompareFastWithGeneric({8, 64, {{3000, 1}, {63, 1}, {64, 1}, {65, 1}}}, 2);
  CompareFastWithGeneric({1, 128, {{1500, 1}, {17, 1}}}, 3);
}

TEST(CudaAttentionTest, DecodeBatchesWithOneSplit) {
  TM_REQUIRE_GPU();
  std::vector<SequenceShape> seqs;
  std::mt19937 rng(9);
  for (int i = 0; i < 48; ++i) seqs.push_back({static_cast<int>(rng() % 700), 1});
  CompareFastWithGeneric({4, 128, seqs}, 4);
  CompareFastWithGeneric({2, 64, seqs}, 5);
}

TEST(CudaAttentionTest, TensorCorePrefillAcrossTilesAndGroups) {
  TM_REQUIRE_GPU();
  const std::vector<SequenceShape> mixed = {{0, 300}, {500, 77}, {1000, 1}, {63, 65}, {5, 2}};
  CompareFastWithGeneric({4, 128, mixed}, 6);
  CompareFastWithGeneric({1, 64, {{0, 200}, {129, 64}}}, 7);
  CompareFastWithGeneric({16, 64, {{0, 100}, {70, 33}}}, 8);
  CompareFastWithGeneric({3, 128, {{0, 50}, {20, 41}}}, 9);  // 64 % 3 != 0: dead rows
}

TEST(CudaAttentionTest, SlidingWindows) {
  TM_REQUIRE_GPU();
  CompareFastWithGeneric({2, 128, {{0, 300}, {400, 150}, {900, 1}}, 100}, 10);
  CompareFastWithGeneric({4, 64, {{2000, 1}, {0, 90}}, 64}, 11);
}

TEST(CudaAttentionTest, F16CacheAndBf16Activations) {
  TM_REQUIRE_GPU();
  const std::vector<SequenceShape> mixed = {{0, 130}, {200, 1}, {66, 20}};
  CompareFastWithGeneric({4, 128, mixed, 0, DType::kF16}, 12);
  CompareFastWithGeneric({4, 128, mixed, 0, DType::kBF16, DType::kBF16}, 13);
  CompareFastWithGeneric({2, 64, mixed, 0, DType::kF16, DType::kBF16}, 14);
}

}  // namespace
}  // namespace tokenmill::testing
