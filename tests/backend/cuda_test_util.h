// Helpers shared by the CUDA backend tests (header-only; the tests that include it link
// backend_test_util.cc).
#pragma once

#include <cstring>
#include <utility>
#include <vector>

#include "backend/backend_test_util.h"
#include "gtest/gtest.h"
#include "tokenmill/backend/cuda_backend.h"
#include "tokenmill/core/dtype.h"

// Skips the test, with the reason, on a machine without a usable GPU.
#define TM_REQUIRE_GPU()                                                                 \
  do {                                                                                   \
    if (::tokenmill::CudaDeviceCount() == 0)                                             \
      GTEST_SKIP() << "needs a CUDA GPU: " << ::tokenmill::CudaDeviceDescription(0);     \
  } while (0)

namespace tokenmill::testing {

// Raw device bytes of `dtype` (F32, F16, BF16) as floats.
inline std::vector<float> DecodeFloats(const std::vector<uint8_t>& raw, DType dtype) {
  const size_t n = raw.size() / DTypeBytes(dtype, 1);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&out[i], raw.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      out[i] = dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
    }
  }
  return out;
}

inline std::vector<float> RoundAll(std::vector<float> x, DType dtype) {
  for (float& v : x) v = RoundToDType(v, dtype);
  return x;
}

inline std::vector<uint16_t> ToBf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = F32ToBf16(x[i]);
  return out;
}

// An F32 device tensor holding `host`.
inline TensorView UploadF32(Backend& b, const std::vector<float>& host, Shape shape) {
  absl::StatusOr<TensorView> t = b.Allocate(DType::kF32, shape);
  EXPECT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(static_cast<int64_t>(host.size()), shape.NumElements());
  b.CopyFromHost(host.data(), *t);
  return *t;
}

inline std::vector<float> DownloadF32(Backend& b, const TensorView& t) {
  std::vector<float> host(t.NumElements());
  b.CopyToHost(t, host.data());
  return host;
}

// A plan of sequences given as {num_query_tokens, context_len} with their block tables;
// token ids are i % 100; logits of each sequence's last row.
inline BatchPlan DecodeLikePlan(const std::vector<std::pair<int, int>>& seqs,
                                const std::vector<std::vector<int32_t>>& tables) {
  BatchPlan plan;
  for (size_t i = 0; i < seqs.size(); ++i) {
    BatchSequence s;
    s.query_start = plan.num_tokens();
    s.num_query_tokens = seqs[i].first;
    s.context_len = seqs[i].second;
    s.block_table = tables[i];
    for (int j = 0; j < s.num_query_tokens; ++j) {
      plan.token_ids.push_back(static_cast<int32_t>((plan.num_tokens() * 7 + 3) % 100));
      plan.positions.push_back(s.context_len - s.num_query_tokens + j);
    }
    plan.logits_rows.push_back(plan.num_tokens() - 1);
    plan.sequences.push_back(std::move(s));
  }
  return plan;
}

}  // namespace tokenmill::testing
