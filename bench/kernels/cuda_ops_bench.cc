// Row-wise kernels on Llama-3-8B shapes (hidden 4096, FFN 14336, 32/8 heads of 128,
// vocab 128256) in GB/s and as a fraction of the copy bandwidth: RMSNorm, the fused
// residual add + RMSNorm, SiluMul, RoPE fused with the KV-cache write; and sampling.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "cuda_bench_util.h"
#include "kernels/elementwise.h"
#include "kernels/rope_kv.h"
#include "kernels/sampling.h"

namespace tokenmill::bench {
namespace {

constexpr int64_t kHidden = 4096, kFfn = 14336, kVocab = 128256;

kernels::ScalarType TypeArg(int64_t bytes) {
  return bytes == 2 ? kernels::ScalarType::kBF16 : kernels::ScalarType::kF32;
}

void BM_RmsNorm(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int64_t rows = state.range(0), elem = state.range(1);
  const size_t bytes = rows * kHidden * elem;
  const int copies = RotationCopies(2 * bytes);
  DeviceBuffer x(bytes * copies), out(bytes * copies), w(kHidden * 4);
  x.FillRandom(static_cast<int>(elem), 1);
  w.FillRandom(4, 2);
  TimeKernel(state, nullptr, [&](int64_t i) {
    const size_t off = (i % copies) * bytes;
    kernels::LaunchRmsNorm(x.as<uint8_t>() + off, w.as<float>(), out.as<uint8_t>() + off,
                           TypeArg(elem), rows, kHidden, 1e-5f, nullptr);
  });
  ReportBandwidth(state, 2.0 * bytes + kHidden * 4);
}
BENCHMARK(BM_RmsNorm)
    ->ArgNames({"rows", "bytes"})
    ->ArgsProduct({{1, 256, 4096}, {2, 4}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_AddRmsNorm(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int64_t rows = state.range(0), elem = state.range(1);
  const size_t bytes = rows * kHidden * elem;
  const int copies = RotationCopies(3 * bytes);
  DeviceBuffer res(bytes * copies), delta(bytes * copies), out(bytes * copies), w(kHidden * 4);
  res.FillRandom(static_cast<int>(elem), 1);
  delta.FillRandom(static_cast<int>(elem), 2);
  w.FillRandom(4, 3);
  TimeKernel(state, nullptr, [&](int64_t i) {
    const size_t off = (i % copies) * bytes;
    kernels::LaunchAddRmsNorm(res.as<uint8_t>() + off, delta.as<uint8_t>() + off, w.as<float>(),
                              out.as<uint8_t>() + off, TypeArg(elem), rows, kHidden, 1e-5f,
                              nullptr);
  });
  ReportBandwidth(state, 4.0 * bytes + kHidden * 4);  // read res, delta; write res, out
}
BENCHMARK(BM_AddRmsNorm)
    ->ArgNames({"rows", "bytes"})
    ->ArgsProduct({{1, 256, 4096}, {2, 4}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_SiluMul(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int64_t rows = state.range(0), elem = state.range(1);
  const size_t bytes = rows * kFfn * elem;
  const int copies = RotationCopies(3 * bytes);
  DeviceBuffer gate(bytes * copies), up(bytes * copies), out(bytes * copies);
  gate.FillRandom(static_cast<int>(elem), 1);
  up.FillRandom(static_cast<int>(elem), 2);
  TimeKernel(state, nullptr, [&](int64_t i) {
    const size_t off = (i % copies) * bytes;
    kernels::LaunchSiluMul(gate.as<uint8_t>() + off, up.as<uint8_t>() + off,
                           out.as<uint8_t>() + off, TypeArg(elem), rows * kFfn, nullptr);
  });
  ReportBandwidth(state, 3.0 * bytes);
}
BENCHMARK(BM_SiluMul)
    ->ArgNames({"rows", "bytes"})
    ->ArgsProduct({{1, 256, 4096}, {2, 4}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// RoPE on q and k (32 + 8 heads of 128), fused with writing k and v into a BF16 cache.
void BM_RopeKvWrite(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int64_t tokens = state.range(0);
  const int heads = 32, kv_heads = 8, hd = 128;
  DeviceBuffer q(tokens * heads * hd * 2), k(tokens * kv_heads * hd * 2),
      v(tokens * kv_heads * hd * 2), kc(tokens * kv_heads * hd * 2), vc(tokens * kv_heads * hd * 2),
      pos(tokens * 4), slots(tokens * 4), freq(hd / 2 * 4);
  q.FillRandom(2, 1);
  k.FillRandom(2, 2);
  v.FillRandom(2, 3);
  std::vector<int32_t> p(tokens), s(tokens);
  std::iota(p.begin(), p.end(), 100);
  std::iota(s.begin(), s.end(), 0);
  std::shuffle(s.begin(), s.end(), std::mt19937(1));
  pos.Upload(p.data(), tokens * 4);
  slots.Upload(s.data(), tokens * 4);
  std::vector<float> f(hd / 2);
  for (int i = 0; i < hd / 2; ++i) f[i] = std::pow(500000.0f, -2.0f * i / hd);
  freq.Upload(f.data(), f.size() * 4);
  kernels::RopeKvArgs a;
  a.num_tokens = tokens;
  a.num_heads = heads;
  a.num_kv_heads = kv_heads;
  a.head_dim = a.rotary_dim = hd;
  a.act_type = kernels::ScalarType::kBF16;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.rotate_q = a.rotate_k = true;
  a.inv_freq = freq.as<float>();
  a.positions = pos.as<int32_t>();
  a.k_cache = kc.data();
  a.v_cache = vc.data();
  a.cache_type = kernels::ScalarType::kBF16;
  a.slot_mapping = slots.as<int32_t>();
  TimeKernel(state, nullptr, [&](int64_t) { kernels::LaunchRopeKv(a, nullptr); });
  // q and k read and written, v read, k and v written to the cache.
  ReportBandwidth(state, tokens * hd * 2.0 * (2 * heads + 2 * kv_heads + kv_heads + 2 * kv_heads));
}
BENCHMARK(BM_RopeKvWrite)->Arg(1)->Arg(256)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);

// top-k 50, top-p 0.9, temperature 0.8 over Llama 3's vocabulary.
void BM_Sample(benchmark::State& state) {
  if (!RequireGpu(state)) return;
  const int rows = static_cast<int>(state.range(0));
  DeviceBuffer logits(int64_t{rows} * kVocab * 4), params(rows * sizeof(kernels::SamplingRow)),
      out(rows * 4);
  logits.FillRandom(4, 1);
  std::vector<kernels::SamplingRow> p(rows);
  for (int i = 0; i < rows; ++i) p[i] = {0.8f, 50, 0.9f, 0.0f, static_cast<uint64_t>(i), 0};
  params.Upload(p.data(), p.size() * sizeof(p[0]));
  TimeKernel(state, nullptr, [&](int64_t) {
    kernels::LaunchSample(logits.as<float>(), kVocab, rows,
                          params.as<kernels::SamplingRow>(), out.as<int32_t>(), nullptr);
  }, 3);
  state.counters["rows/s"] = benchmark::Counter(rows, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Sample)->Arg(1)->Arg(256)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokenmill::bench
