// CUDA graphs for decode steps: a one-layer decoder runs the same steps on a backend with
// graphs and one without; every step's logits must agree, whether the step was captured,
// replayed (reading the new step's token ids, positions and block tables in place) or run
// eagerly because its buffers cannot hold the bucket's padded rows.
#include <random>

#include "backend/backend_test_util.h"
#include "backend/cuda_test_util.h"
#include "gtest/gtest.h"

namespace tokenmill::testing {
namespace {

constexpr int kVocab = 97, kHidden = 64, kHeads = 4, kKvHeads = 2, kHeadDim = 64;
constexpr int kBlockSize = 16, kBlocksPerSeq = 4, kNumSeqs = 8;

struct HostWeights {
  HostWeight table, norm, wq, wk, wv, wo, lm_head;
  explicit HostWeights(std::mt19937& rng)
      : table(RandomWeight(rng, DType::kBF16, kVocab, kHidden)),
        norm(RandomWeight(rng, DType::kF32, 1, kHidden)),
        wq(RandomWeight(rng, DType::kBF16, kHeads * kHeadDim, kHidden, 0.2f)),
        wk(RandomWeight(rng, DType::kBF16, kKvHeads * kHeadDim, kHidden, 0.2f)),
        wv(RandomWeight(rng, DType::kBF16, kKvHeads * kHeadDim, kHidden)),
        wo(RandomWeight(rng, DType::kBF16, kHidden, kHeads * kHeadDim, 0.1f)),
        lm_head(RandomWeight(rng, DType::kBF16, kVocab, kHidden)) {}
};

TensorView Rows(const TensorView& t, int64_t rows) {
  TensorView v = t;
  v.shape = Shape{rows, t.shape[1]};
  return v;
}

// Embedding -> norm -> q/k/v -> RoPE + cache write -> attention -> o-proj -> add+norm ->
// logits rows -> lm head: every op the Llama graph uses, in its order.
class MiniDecoder {
 public:
  MiniDecoder(Backend& b, const HostWeights& w, int max_rows) : b_(b) {
    for (auto [host, dev] : {std::pair{&w.table, &table_}, {&w.norm, &norm_}, {&w.wq, &wq_},
                             {&w.wk, &wk_}, {&w.wv, &wv_}, {&w.wo, &wo_}, {&w.lm_head, &lm_}}) {
      absl::StatusOr<TensorView> t = b.UploadWeight(host->view());
      EXPECT_TRUE(t.ok()) << t.status();
      *dev = *t;
    }
    auto alloc = [&](int64_t cols) { return *b.Allocate(DType::kF32, Shape{max_rows, cols}); };
    x_ = alloc(kHidden), h_ = alloc(kHidden), proj_ = alloc(kHidden);
    q_ = alloc(kHeads * kHeadDim), attn_ = alloc(kHeads * kHeadDim);
    k_ = alloc(kKvHeads * kHeadDim), v_ = alloc(kKvHeads * kHeadDim);
    rows_ = alloc(kHidden), logits_ = alloc(kVocab);
    rope_.head_dim = rope_.rotary_dim = kHeadDim;
    EXPECT_TRUE(b.AllocateKvCache({1, kNumSeqs * kBlocksPerSeq, kBlockSize, kKvHeads, kHeadDim,
                                   DType::kBF16}).ok());
  }

  std::vector<float> Step(const BatchPlan& plan) {
    EXPECT_TRUE(b_.PlanStep(plan).ok());
    const int64_t n = plan.num_tokens(), l = static_cast<int64_t>(plan.logits_rows.size());
    const TensorView x = Rows(x_, n), h = Rows(h_, n), q = Rows(q_, n), k = Rows(k_, n),
                     v = Rows(v_, n), attn = Rows(attn_, n), proj = Rows(proj_, n);
    b_.Embedding(table_, x);
    b_.RmsNorm(x, norm_, 1e-5f, h);
    b_.MatMul(h, wq_, nullptr, q);
    b_.MatMul(h, wk_, nullptr, k);
    b_.MatMul(h, wv_, nullptr, v);
    b_.Rope(q, k, kHeads, kKvHeads, rope_);
    b_.WriteKv(0, k, v);
    b_.Attention(0, q, {kHeads, kKvHeads, kHeadDim, 0.125f, 0}, attn);
    b_.MatMul(attn, wo_, nullptr, proj);
    b_.AddRmsNorm(x, proj, norm_, 1e-5f, h);
    b_.GatherLogitsRows(h, Rows(rows_, l));
    b_.MatMul(Rows(rows_, l), lm_, nullptr, Rows(logits_, l));
    std::vector<float> out = DownloadF32(b_, Rows(logits_, l));
    EXPECT_TRUE(b_.Finish().ok());
    return out;
  }

 private:
  Backend& b_;
  TensorView table_, norm_, wq_, wk_, wv_, wo_, lm_;
  TensorView x_, h_, q_, k_, v_, attn_, proj_, rows_, logits_;
  RopeParams rope_;
};

std::vector<int32_t> TableOf(int seq) {
  std::vector<int32_t> t(kBlocksPerSeq);
  for (int i = 0; i < kBlocksPerSeq; ++i) t[i] = seq + kNumSeqs * (kBlocksPerSeq - 1 - i);
  return t;
}

// Prefills every sequence, then decodes subsets of them (batch sizes crossing buckets,
// repeating so that graphs are captured and then replayed).
void RunScenario(MiniDecoder& graphed, MiniDecoder& eager) {
  std::vector<int> context(kNumSeqs);
  std::vector<std::pair<int, int>> shapes;
  std::vector<std::vector<int32_t>> tables;
  for (int s = 0; s < kNumSeqs; ++s) {
    context[s] = 5 + 2 * s;
    shapes.push_back({context[s], context[s]});
    tables.push_back(TableOf(s));
  }
  BatchPlan prefill = DecodeLikePlan(shapes, tables);
  EXPECT_LT(RelativeError(graphed.Step(prefill), [&] {
              const std::vector<float> e = eager.Step(prefill);
              return std::vector<double>(e.begin(), e.end());
            }()), 1e-5);
  const std::vector<std::vector<int>> steps = {{0, 1, 2, 3, 4, 5, 6, 7}, {0, 2, 3, 4, 5, 6, 7},
                                               {1, 2, 3, 5, 7},          {0, 1, 2},
                                               {0, 1, 2, 3, 4, 5, 6, 7}, {7, 6, 5, 4, 3, 2},
                                               {0, 1, 2, 3, 4, 5, 6, 7}, {3, 4, 5}};
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "decode step " << i);
    shapes.clear();
    tables.clear();
    for (int s : steps[i]) {
      ++context[s];
      shapes.push_back({1, context[s]});
      tables.push_back(TableOf(s));
    }
    BatchPlan plan = DecodeLikePlan(shapes, tables);
    for (size_t j = 0; j < plan.token_ids.size(); ++j) {
      plan.token_ids[j] = static_cast<int32_t>((i * 31 + j * 7) % kVocab);
    }
    const std::vector<float> want = eager.Step(plan);
    const std::vector<float> got = graphed.Step(plan);
    EXPECT_LT(RelativeError(got, std::vector<double>(want.begin(), want.end())), 1e-4);
  }
}

TEST(CudaGraphTest, ReplayedDecodeStepsMatchEagerOnes) {
  TM_REQUIRE_GPU();
  std::mt19937 rng(21);
  const HostWeights w(rng);
  CudaBackendOptions no_graphs;
  no_graphs.use_cuda_graphs = false;
  auto gb = MakeCudaBackend({});
  auto eb = MakeCudaBackend(no_graphs);
  ASSERT_TRUE(gb.ok() && eb.ok()) << gb.status() << eb.status();
  MiniDecoder graphed(**gb, w, 64), eager(**eb, w, 64);
  RunScenario(graphed, eager);
  const absl::StatusOr<CudaGraphStats> stats = GetCudaGraphStats(**gb);
  ASSERT_TRUE(stats.ok());
  // Bucket 8 is seen six times (warm-up, capture, replays), bucket 4 twice.
  EXPECT_GE(stats->captures, 2);
  EXPECT_GE(stats->replays, 4);
  const absl::StatusOr<CudaGraphStats> none = GetCudaGraphStats(**eb);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->captures, 0);
  EXPECT_EQ(none->replays, 0);
}

TEST(CudaGraphTest, StepsWhoseBuffersCannotHoldTheBucketRunEagerly) {
  TM_REQUIRE_GPU();
  std::mt19937 rng(22);
  const HostWeights w(rng);
  CudaBackendOptions no_graphs;
  no_graphs.use_cuda_graphs = false;
  auto gb = MakeCudaBackend({});
  auto eb = MakeCudaBackend(no_graphs);
  ASSERT_TRUE(gb.ok() && eb.ok());
  // Buffers of 5 rows cannot hold bucket 8: a 5-sequence decode must run eagerly, and
  // right, every time. (First tokens: context 1, nothing cached before.)
  MiniDecoder small(**gb, w, 5), small_eager(**eb, w, 5);
  const BatchPlan plan = DecodeLikePlan({{1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}},
                                        {TableOf(0), TableOf(1), TableOf(2), TableOf(3), TableOf(4)});
  const int64_t eager_before = GetCudaGraphStats(**gb)->eager_steps;
  const std::vector<float> want = small_eager.Step(plan);
  for (int i = 0; i < 3; ++i) {
    const std::vector<float> got = small.Step(plan);
    EXPECT_LT(RelativeError(got, std::vector<double>(want.begin(), want.end())), 1e-4);
  }
  EXPECT_EQ(GetCudaGraphStats(**gb)->eager_steps, eager_before + 3);
}

}  // namespace
}  // namespace tokenmill::testing
