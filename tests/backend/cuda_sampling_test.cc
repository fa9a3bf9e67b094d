// Sampling on the GPU (CudaSampleTokens): greedy equals the host argmax; every filter
// keeps exactly the tokens its definition keeps; draws follow the softmax (a frequency
// check over thousands of seeds); the same seed and offset give the same token wherever
// the row sits in the batch; penalties move the argmax as their formulas say.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "backend/backend_test_util.h"
#include "backend/cuda_test_util.h"
#include "gtest/gtest.h"

namespace tokenmill::testing {
namespace {

class CudaSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) {
      GTEST_SKIP() << "needs a CUDA GPU: " << CudaDeviceDescription(0);
    }
    auto b = MakeCudaBackend({});
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(b).value();
  }

  // Samples rows of `logits` ([rows.size(), vocab]).
  std::vector<int32_t> Sample(const std::vector<float>& logits, int64_t vocab,
                              const std::vector<DeviceSamplingRow>& rows) {
    const TensorView t =
        UploadF32(*backend_, logits, Shape{static_cast<int64_t>(rows.size()), vocab});
    std::vector<int32_t> tokens;
    const absl::Status s = CudaSampleTokens(*backend_, t, rows, &tokens);
    EXPECT_TRUE(s.ok()) << s;
    backend_->Free(t);
    return tokens;
  }

  // The same logits row repeated for each of `rows`.
  static std::vector<float> Repeat(const std::vector<float>& row, size_t rows) {
    std::vector<float> out;
    for (size_t i = 0; i < rows; ++i) out.insert(out.end(), row.begin(), row.end());
    return out;
  }

  std::unique_ptr<Backend> backend_;
};

TEST_F(CudaSamplingTest, GreedyIsTheArgmaxWithLowestIdOnTies) {
  std::mt19937 rng(1);
  const int64_t vocab = 128256;  // Llama 3's vocabulary: many elements per thread
  const int rows = 6;
  std::vector<float> logits = RandomFloats(rng, rows * vocab, 8.0f);
  logits[2 * vocab + 77] = logits[2 * vocab + 90000] = 50.0f;  // a tie
  std::vector<DeviceSamplingRow> params(rows);
  for (DeviceSamplingRow& p : params) p.temperature = 0.0f;
  params[3].temperature = 0.8f;
  params[3].top_k = 1;  // top-k 1 is greedy too
  const std::vector<int32_t> got = Sample(logits, vocab, params);
  for (int r = 0; r < rows; ++r) {
    const auto row = logits.begin() + r * vocab;
    EXPECT_EQ(got[r], std::max_element(row, row + vocab) - row) << "row " << r;
  }
  EXPECT_EQ(got[2], 77);
}

TEST_F(CudaSamplingTest, FiltersKeepExactlyTheirTokens) {
  // Probabilities 0.4, 0.25, 0.15, 0.1, 0.05 and 0.05 spread over 100 tokens.
  std::vector<float> row(105);
  const double head[] = {0.4, 0.25, 0.15, 0.1, 0.05};
  for (int i = 0; i < 5; ++i) row[i] = static_cast<float>(std::log(head[i]));
  for (int i = 5; i < 105; ++i) row[i] = static_cast<float>(std::log(0.05 / 100));
  std::mt19937 perm_rng(4);
  std::vector<int> perm(105);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), perm_rng);  // filters must not depend on ids
  std::vector<float> shuffled(105);
  for (int i = 0; i < 105; ++i) shuffled[perm[i]] = row[i];
  struct Filter {
    int top_k;
    float top_p, min_p;
    std::set<int> kept;  // in unshuffled ids
  };
  const Filter filters[] = {
      {3, 1.0f, 0.0f, {0, 1, 2}},     // top-k
      {0, 0.6f, 0.0f, {0, 1}},        // 0.4 < 0.6 <= 0.65
      {0, 0.64f, 0.0f, {0, 1}},
      {0, 0.66f, 0.0f, {0, 1, 2}},
      {0, 1.0f, 0.3f, {0, 1, 2}},     // min-p: p >= 0.12
      {4, 0.8f, 0.0f, {0, 1, 2}},     // top-p over the top-4 mass 0.9: 0.72 needs 3 tokens
      {0, 0.9f, 0.3f, {0, 1, 2}},     // min-p first, then top-p over its 0.8: 0.72
  };
  const int draws = 2000;
  for (const Filter& f : filters) {
    SCOPED_TRACE(::testing::Message() << "top_k " << f.top_k << " top_p " << f.top_p
                                      << " min_p " << f.min_p);
    std::vector<DeviceSamplingRow> params(draws);
    for (int i = 0; i < draws; ++i) {
      params[i].top_k = f.top_k;
      params[i].top_p = f.top_p;
      params[i].min_p = f.min_p;
      params[i].seed = 1000 + i;
    }
    const std::vector<int32_t> got = Sample(Repeat(shuffled, draws), 105, params);
    std::set<int> seen;
    for (int32_t t : got) {
      const int original = static_cast<int>(std::find(perm.begin(), perm.end(), t) - perm.begin());
      seen.insert(original);
    }
    EXPECT_EQ(seen, f.kept);  // every kept token shows up in 2000 draws, nothing else
  }
}

TEST_F(CudaSamplingTest, DrawsFollowTheTemperedSoftmax) {
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.4};
  std::vector<float> row;
  for (double x : p) row.push_back(static_cast<float>(std::log(x)));
  const int draws = 20000;
  for (float temperature : {1.0f, 0.5f, 2.0f}) {
    SCOPED_TRACE(temperature);
    std::vector<DeviceSamplingRow> params(draws);
    for (int i = 0; i < draws; ++i) {
      params[i].temperature = temperature;
      params[i].seed = static_cast<uint64_t>(i) * 2654435761u;
      params[i].offset = 3;
    }
    const std::vector<int32_t> got = Sample(Repeat(row, draws), 4, params);
    std::vector<double> want(4);
    double z = 0;
    for (int i = 0; i < 4; ++i) z += (want[i] = std::pow(p[i], 1.0 / temperature));
    for (int i = 0; i < 4; ++i) {
      const double freq = static_cast<double>(std::count(got.begin(), got.end(), i)) / draws;
      // 5 standard deviations of a binomial proportion at 20000 draws.
      const double sigma = std::sqrt(want[i] / z * (1 - want[i] / z) / draws);
      EXPECT_NEAR(freq, want[i] / z, 5 * sigma) << "token " << i;
    }
  }
}

TEST_F(CudaSamplingTest, SameSeedAndOffsetGiveTheSameTokenAnywhereInTheBatch) {
  std::mt19937 rng(2);
  const int64_t vocab = 3000;
  const std::vector<float> row = RandomFloats(rng, vocab, 3.0f);
  DeviceSamplingRow target;
  target.seed = 42;
  target.offset = 7;
  target.top_p = 0.95f;
  const std::vector<int32_t> alone = Sample(row, vocab, {target});
  std::vector<DeviceSamplingRow> batch(9);
  for (int i = 0; i < 9; ++i) batch[i].seed = 100 + i;
  batch[5] = target;
  const std::vector<int32_t> in_batch = Sample(Repeat(row, 9), vocab, batch);
  EXPECT_EQ(in_batch[5], alone[0]);
  // Another offset is another draw: over 50 offsets, several distinct tokens.
  std::vector<DeviceSamplingRow> offsets(50, target);
  for (int i = 0; i < 50; ++i) offsets[i].offset = i;
  const std::vector<int32_t> draws = Sample(Repeat(row, 50), vocab, offsets);
  EXPECT_GT(std::set<int32_t>(draws.begin(), draws.end()).size(), 5u);
}

TEST_F(CudaSamplingTest, PenaltiesFollowTheirFormulas) {
  // Token 0 leads token 1 by 0.1; penalties on token 0 hand the argmax to token 1.
  const std::vector<float> row = {5.0f, 4.9f, 1.0f, -2.0f};
  DeviceSamplingRow greedy;
  greedy.temperature = 0.0f;
  std::vector<DeviceSamplingRow> rows(5, greedy);
  rows[0].repetition_penalty = 1.1f;  // seen in the prompt: 5 / 1.1 < 4.9
  rows[0].prompt_tokens = {0, 3};
  rows[1].frequency_penalty = 0.06f;  // generated twice: 5 - 0.12 < 4.9
  rows[1].output_tokens = {0, 2, 0};
  rows[2].presence_penalty = 0.2f;  // generated: 5 - 0.2
  rows[2].output_tokens = {0};
  rows[3].frequency_penalty = 0.04f;  // generated twice: 5 - 0.08 still leads
  rows[3].output_tokens = {0, 0};
  rows[4].repetition_penalty = 1.1f;  // only token 1 seen: it drops further
  rows[4].output_tokens = {1};
  const std::vector<int32_t> got = Sample(Repeat(row, 5), 4, rows);
  EXPECT_EQ(got, (std::vector<int32_t>{1, 1, 1, 0, 0}));
}

TEST_F(CudaSamplingTest, RejectsLogitsOfTheWrongShape) {
  const TensorView t = UploadF32(*backend_, std::vector<float>(40, 1.0f), Shape{4, 10});
  std::vector<int32_t> tokens;
  EXPECT_EQ(CudaSampleTokens(*backend_, t, std::vector<DeviceSamplingRow>(3), &tokens).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmill::testing
