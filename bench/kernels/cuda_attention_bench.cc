// Paged attention kernels on Llama-3-8B shapes (32 query heads, 8 KV heads, head_dim 128,
// BF16 cache and activations): split-K decode in GB/s of K/V streamed (a fraction of the
// copy bandwidth), tensor-core prefill in TFLOP/s (a fraction of the bf16 GEMM rate).
// Working sets smaller than 4x L2 rotate over copies, as a model's layers do.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "cuda_bench_util.h"
#include "kernels/attention.h"

namespace tokenmill::bench {
namespace {

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlock = 16;

// A paged cache holding `num_seqs` sequences of `context` tokens each, `copies` times,
// plus the metadata of a step where each sequence has `query` new tokens.
struct PagedSetup {
  int num_seqs, context, query, copies;
  std::vector<DeviceBuffer> k, v;
  DeviceBuffer tables, query_start, num_query, context_len, seq_ids, q, out, workspace;
  int stride = 0;

  PagedSetup(int seqs, int ctx, int q_len)
      : num_seqs(seqs), context(ctx), query(q_len) {
    stride = (ctx + kBlock - 1) / kBlock;
    const int64_t blocks = int64_t{seqs} * stride;
    const size_t cache_bytes = blocks * kBlock * kKvHeads * kHeadDim * 2;
    copies = RotationCopies(2 * cache_bytes, 32);
    for (int c = 0; c < copies; ++c) {
      k.emplace_back(cache_bytes);
      v.emplace_back(cache_bytes);
      k.back().FillRandom(2, 10 + c);
      v.back().FillRandom(2, 50 + c);
    }
    std::vector<int32_t> ids(blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(7));
    tables = DeviceBuffer(ids.size() * 4);
    tables.Upload(ids.data(), ids.size() * 4);
    std::vector<int32_t> qs(seqs), nq(seqs, q_len), cl(seqs, ctx), sel(seqs);
    for (int i = 0; i < seqs; ++i) qs[i] = i * q_len, sel[i] = i;
    for (auto [buf, host] : {std::pair{&query_start, &qs}, {&num_query, &nq},
                             {&context_len, &cl}, {&seq_ids, &sel}}) {
      *buf = DeviceBuffer(host->size() * 4);
      buf->Upload(host->data(), host->size() * 4);
    }
    const size_t act = int64_t{seqs} * q_len * kHeads * kHeadDim * 2;
    q = DeviceBuffer(act);
    q.FillRandom(2, 3);
    out = DeviceBuffer(act);
  }

  kernels::AttentionArgs Args(int copy) const {
    kernels::AttentionArgs a;
    a.q = q.data();
    a.out = out.data();
    a.act_type = kernels::ScalarType::kBF16;
    a.num_heads = kHeads;
    a.num_kv_heads = kKvHeads;
    a.head_dim = kHeadDim;
    a.scale = 0.08838834764f;
    a.kv = {k[copy].data(), v[copy].data(), kernels::ScalarType::kBF16, kBlock,
            tables.as<int32_t>(), stride};
    a.batch = {query_start.as<int32_t>(), num_query.as<int32_t>(), context_len.as<int32_t>(),
               seq_ids.as<int32_t>(), num_seqs, query};
    return a;
  }
};

void BM_DecodeAttention(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  PagedSetup s(batch, ctx, 1);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int splits = kernels::ChooseDecodeSplits(batch, kKvHeads, ctx, sms);
  s.workspace = DeviceBuffer(
      std::max<size_t>(16, kernels::DecodeAttentionWorkspaceBytes(batch, kHeads, kHeadDim, splits)));
  TimeKernel(state, nullptr, [&](int64_t i) {
    kernels::LaunchPagedDecodeAttention(s.Args(static_cast<int>(i % s.copies)), splits,
                                        s.workspace.data(), nullptr);
  });
  state.counters["splits"] = splits;
  ReportBandwidth(state, 2.0 * batch * ctx * kKvHeads * kHeadDim * 2);
}
BENCHMARK(BM_DecodeAttention)
    ->ArgNames({"batch", "ctx"})
    ->Args({1, 1024})
    ->Args({1, 8192})
    ->Args({1, 32768})
    ->Args({32, 1024})
    ->Args({32, 4096})
    ->Args({128, 2048})
    ->Args({256, 1024})
    ->Args({256, 4096})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// One sequence: `chunk` new tokens after `cached` ones (chunked prefill).
void BM_PrefillAttention(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int chunk = static_cast<int>(state.range(0)), cached = static_cast<int>(state.range(1));
  PagedSetup s(1, cached + chunk, chunk);
  TimeKernel(state, nullptr, [&](int64_t i) {
    kernels::LaunchPagedPrefillAttention(s.Args(static_cast<int>(i % s.copies)), nullptr);
  }, 3);
  // Causal: query j sees cached + j + 1 keys; 2 FLOPs per MAC, QK^T and PV.
  double pairs = 0;
  for (int j = 0; j < chunk; ++j) pairs += cached + j + 1;
  ReportFlops(state, 4.0 * kHeads * kHeadDim * pairs);
}
BENCHMARK(BM_PrefillAttention)
    ->ArgNames({"chunk", "cached"})
    ->Args({512, 0})
    ->Args({2048, 0})
    ->Args({4096, 0})
    ->Args({2048, 6144})
    ->Args({8192, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokenmill::bench
