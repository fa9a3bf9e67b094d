#include "tokenmill/sampling/sampling_params.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Validate() on `p` must fail with InvalidArgument naming `field`.
void ExpectRejected(const SamplingParams& p, const std::string& field) {
  const absl::Status s = p.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_THAT(std::string(s.message()), HasSubstr("SamplingParams." + field)) << s;
}

TEST(SamplingParamsTest, DefaultsAndBoundariesAreValid) {
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = -1;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.frequency_penalty = -2.0f;
  p.presence_penalty = 2.0f;
  p.repetition_penalty = 0.01f;
  p.max_tokens = 1;
  p.logprobs = kMaxLogprobs;
  p.stop_token_ids = {0, 7};
  EXPECT_TRUE(p.Validate().ok()) << p.Validate();
}

TEST(SamplingParamsTest, RejectsTemperature) {
  for (float t : {-0.1f, kNaN, kInf}) {
    SamplingParams p;
    p.temperature = t;
    ExpectRejected(p, "temperature");
  }
}

TEST(SamplingParamsTest, RejectsTopP) {
  for (float v : {0.0f, -0.5f, 1.0001f, kNaN}) {
    SamplingParams p;
    p.top_p = v;
    ExpectRejected(p, "top_p");
  }
}

TEST(SamplingParamsTest, RejectsMinP) {
  for (float v : {-0.01f, 1.01f, kNaN}) {
    SamplingParams p;
    p.min_p = v;
    ExpectRejected(p, "min_p");
  }
}

TEST(SamplingParamsTest, RejectsTopKBelowMinusOne) {
  SamplingParams p;
  p.top_k = -2;
  ExpectRejected(p, "top_k");
}

TEST(SamplingParamsTest, RejectsRepetitionPenalty) {
  for (float v : {0.0f, -1.0f, kNaN, kInf}) {
    SamplingParams p;
    p.repetition_penalty = v;
    ExpectRejected(p, "repetition_penalty");
  }
}

TEST(SamplingParamsTest, RejectsFrequencyAndPresencePenalties) {
  for (float v : {-2.01f, 2.01f, kNaN}) {
    SamplingParams p;
    p.frequency_penalty = v;
    ExpectRejected(p, "frequency_penalty");
    SamplingParams q;
    q.presence_penalty = v;
    ExpectRejected(q, "presence_penalty");
  }
}

TEST(SamplingParamsTest, RejectsMaxTokensLogprobsAndStopIds) {
  SamplingParams p;
  p.max_tokens = 0;
  ExpectRejected(p, "max_tokens");
  p = SamplingParams{};
  p.logprobs = -1;
  ExpectRejected(p, "logprobs");
  p.logprobs = kMaxLogprobs + 1;
  ExpectRejected(p, "logprobs");
  p = SamplingParams{};
  p.stop_token_ids = {3, -4};
  ExpectRejected(p, "stop_token_ids[1]");
}

TEST(SamplingParamsTest, GreedyBelowEpsilon) {
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_TRUE(p.IsGreedy());
  p.temperature = kGreedyTemperature / 2;
  EXPECT_TRUE(p.IsGreedy());
  p.temperature = 0.01f;
  EXPECT_FALSE(p.IsGreedy());
}

TEST(SamplingParamsTest, StopTokens) {
  SamplingParams p;
  p.stop_token_ids = {5};
  const std::vector<int32_t> eos = {2, 9};
  EXPECT_TRUE(IsStopToken(p, 5, eos));
  EXPECT_TRUE(IsStopToken(p, 9, eos));
  EXPECT_FALSE(IsStopToken(p, 3, eos));
  p.ignore_eos = true;
  EXPECT_FALSE(IsStopToken(p, 9, eos));
  EXPECT_TRUE(IsStopToken(p, 5, eos));  // explicit stop ids still stop
}

}  // namespace
}  // namespace tokenmill
