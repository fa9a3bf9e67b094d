// Workload specs and generators: exact lengths, distributions within tolerance, agentic
// session structure, determinism by seed.
#include "tokenmill/loadgen/workload.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "gtest/gtest.h"
#include "testing/testdata.h"

namespace tokenmill::loadgen {
namespace {

std::shared_ptr<const TokenSource> ByteSource() {
  static const auto* tok = MakeByteTokenizer().release();
  auto src = MakeTokenSource(*tok);
  EXPECT_TRUE(src.ok()) << src.status();
  return std::make_shared<const TokenSource>(*src);
}

WorkloadGenerator Gen(const std::string& spec, uint64_t seed = 1, int max_len = 1 << 20) {
  auto parsed = ParseWorkloadSpec(spec);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  auto gen = WorkloadGenerator::Create(*parsed, ByteSource(), seed, max_len);
  EXPECT_TRUE(gen.ok()) << gen.status();
  return *std::move(gen);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

TEST(WorkloadSpecTest, ParsesEveryKind) {
  auto fixed = ParseWorkloadSpec("fixed:512:128");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->kind, WorkloadKind::kFixed);
  EXPECT_EQ(fixed->input_min, 512);
  EXPECT_EQ(fixed->input_max, 512);
  EXPECT_EQ(fixed->output_min, 128);
  auto random = ParseWorkloadSpec("random:10-20:5-7");
  ASSERT_TRUE(random.ok());
  EXPECT_EQ(random->kind, WorkloadKind::kRandom);
  EXPECT_EQ(random->input_min, 10);
  EXPECT_EQ(random->input_max, 20);
  EXPECT_EQ(random->output_min, 5);
  EXPECT_EQ(random->output_max, 7);
  auto chat = ParseWorkloadSpec("chat:in_median=100,out_sigma=0.5,out_max=64");
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->chat.input_median, 100);
  EXPECT_EQ(chat->chat.output_sigma, 0.5);
  EXPECT_EQ(chat->chat.output_max, 64);
  EXPECT_EQ(chat->chat.input_sigma, ChatParams{}.input_sigma);
  auto agentic = ParseWorkloadSpec("agentic:system=300,turns=3-5,think=0.5");
  ASSERT_TRUE(agentic.ok());
  EXPECT_EQ(agentic->agentic.system_tokens, 300);
  EXPECT_EQ(agentic->agentic.min_turns, 3);
  EXPECT_EQ(agentic->agentic.max_turns, 5);
  EXPECT_EQ(agentic->agentic.think_mean_s, 0.5);
  EXPECT_EQ(ParseWorkloadSpec("agentic")->agentic.min_turns, 10);
  EXPECT_EQ(ParseWorkloadSpec("agentic")->agentic.max_turns, 50);
}

TEST(WorkloadSpecTest, ErrorsNameThePart) {
  for (const char* bad : {"fixed:12", "fixed:a:3", "fixed:0:3", "random:5-2:1-1", "chat:foo=1",
                          "chat:in_median=-3", "agentic:turns=9-3", "poisson", "chat:in_max"}) {
    auto s = ParseWorkloadSpec(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.status().message().find(bad), std::string::npos) << s.status();
  }
  EXPECT_NE(ParseWorkloadSpec("chat:foo=1").status().message().find("in_median"),
            std::string::npos);
}

TEST(TokenSourceTest, ByteTokenizerGivesPrintableAsciiAndBos) {
  auto src = ByteSource();
  EXPECT_EQ(src->bos_id, 256);
  ASSERT_FALSE(src->content_ids.empty());
  for (int32_t id : src->content_ids) {
    EXPECT_TRUE((id >= 0x20 && id < 0x7f) || id == '\n' || id == '\t') << id;
  }
}

TEST(TokenSourceTest, SentencePieceExcludesSpecialAndByteTokens) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  auto tok = LoadTokenizer(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto src = MakeTokenSource(**tok);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->bos_id, (*tok)->bos_id());
  EXPECT_GT(src->content_ids.size(), 200u);
  for (int32_t id : src->content_ids) {
    EXPECT_FALSE((*tok)->IsSpecial(id)) << id;
    EXPECT_FALSE((*tok)->IsByteToken(id)) << id;
  }
}

TEST(WorkloadTest, FixedLengthsAreExactAndStartWithBos) {
  const WorkloadGenerator g = Gen("fixed:37:9");
  for (int i = 0; i < 20; ++i) {
    const Session s = g.MakeSession(i);
    ASSERT_EQ(s.turns.size(), 1u);
    const std::vector<int32_t> ids = s.PromptIds(0);
    EXPECT_EQ(ids.size(), 37u);
    EXPECT_EQ(s.turns[0].prompt_tokens, 37);
    EXPECT_EQ(s.turns[0].max_tokens, 9);
    EXPECT_EQ(ids[0], 256);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 256), 1);
    EXPECT_FALSE(s.truncated);
  }
}

TEST(WorkloadTest, RandomLengthsCoverTheClosedRanges) {
  const WorkloadGenerator g = Gen("random:10-14:3-4");
  std::set<int> ins, outs;
  double sum = 0;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    const Session s = g.MakeSession(i);
    ins.insert(s.turns[0].prompt_tokens);
    outs.insert(s.turns[0].max_tokens);
    EXPECT_EQ(s.PromptIds(0).size(), static_cast<size_t>(s.turns[0].prompt_tokens));
    sum += s.turns[0].prompt_tokens;
  }
  EXPECT_EQ(ins, (std::set<int>{10, 11, 12, 13, 14}));
  EXPECT_EQ(outs, (std::set<int>{3, 4}));
  EXPECT_NEAR(sum / n, 12.0, 0.15);  // uniform mean, ~5 standard errors
}

TEST(WorkloadTest, ChatLengthsAreLogNormalWithTheGivenMedianAndSigma) {
  const WorkloadGenerator g =
      Gen("chat:in_median=200,in_sigma=0.7,in_max=100000,out_median=50,out_sigma=0.4");
  std::vector<double> in, out, log_in;
  for (int i = 0; i < 4000; ++i) {
    const Session s = g.MakeSession(i);
    in.push_back(s.turns[0].prompt_tokens);
    out.push_back(s.turns[0].max_tokens);
    log_in.push_back(std::log(s.turns[0].prompt_tokens));
  }
  EXPECT_NEAR(Median(in), 200, 200 * 0.06);
  EXPECT_NEAR(Median(out), 50, 50 * 0.06);
  const double mean = std::accumulate(log_in.begin(), log_in.end(), 0.0) / log_in.size();
  double var = 0;
  for (double x : log_in) var += (x - mean) * (x - mean);
  EXPECT_NEAR(std::sqrt(var / log_in.size()), 0.7, 0.04);
}

TEST(WorkloadTest, LongTailIsClampedToTheContext) {
  const WorkloadGenerator g = Gen("chat:in_median=400,in_sigma=1.5,in_max=5000", 3, 512);
  int truncated = 0;
  for (int i = 0; i < 500; ++i) {
    const Session s = g.MakeSession(i);
    EXPECT_LE(s.turns[0].prompt_tokens + s.turns[0].max_tokens, 512);
    EXPECT_GE(s.turns[0].max_tokens, 1);
    truncated += s.truncated;
  }
  EXPECT_GT(truncated, 0);
  auto too_long =
      WorkloadGenerator::Create(*ParseWorkloadSpec("fixed:500:100"), ByteSource(), 1, 512);
  EXPECT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("--max-model-len"), std::string::npos);
}

TEST(WorkloadTest, AgenticSessionsShareTheSystemPromptAndGrowTheirHistory) {
  const WorkloadGenerator g = Gen("agentic:system=300,turns=10-50,think=2");
  const Session a = g.MakeSession(0);
  const Session b = g.MakeSession(1);
  ASSERT_FALSE(a.segments.empty());
  EXPECT_EQ(a.segments[0], b.segments[0]);  // the same shared system prompt
  EXPECT_EQ(a.segments[0]->size(), 300u);
  std::vector<double> thinks;
  std::set<size_t> num_turns;
  for (int i = 0; i < 60; ++i) {
    const Session s = g.MakeSession(i);
    EXPECT_FALSE(s.truncated);
    ASSERT_GE(s.turns.size(), 10u);
    ASSERT_LE(s.turns.size(), 50u);
    num_turns.insert(s.turns.size());
    EXPECT_EQ(s.turns[0].think_before_s, 0.0);
    std::vector<int32_t> prev = s.PromptIds(0);
    EXPECT_EQ(prev.size(), static_cast<size_t>(s.turns[0].prompt_tokens));
    EXPECT_EQ(std::vector<int32_t>(prev.begin(), prev.begin() + 300), *a.segments[0]);
    for (size_t t = 1; t < s.turns.size(); ++t) {
      const std::vector<int32_t> ids = s.PromptIds(t);
      ASSERT_EQ(ids.size(), static_cast<size_t>(s.turns[t].prompt_tokens));
      // History: the previous prompt, then a reply of the length that turn asked for, then a
      // new user message.
      ASSERT_GT(ids.size(), prev.size() + s.turns[t - 1].max_tokens);
      EXPECT_TRUE(std::equal(prev.begin(), prev.end(), ids.begin()));
      EXPECT_EQ(s.turns[t].num_prompt_segments, 2 * static_cast<int>(t) + 2);
      EXPECT_EQ(s.segments[2 * t]->size(), static_cast<size_t>(s.turns[t - 1].max_tokens));
      thinks.push_back(s.turns[t].think_before_s);
      prev = ids;
    }
  }
  EXPECT_GT(num_turns.size(), 10u);  // lengths spread over the range
  const double mean_think = std::accumulate(thinks.begin(), thinks.end(), 0.0) / thinks.size();
  EXPECT_NEAR(mean_think, 2.0, 0.2);  // exponential, ~1700 draws
}

TEST(WorkloadTest, AgenticSessionsEndAtTheContextLength) {
  const WorkloadGenerator g = Gen("agentic:system=200,turns=40-50", 5, 2048);
  int truncated = 0;
  for (int i = 0; i < 20; ++i) {
    const Session s = g.MakeSession(i);
    ASSERT_GE(s.turns.size(), 1u);
    for (const Turn& t : s.turns) EXPECT_LE(t.prompt_tokens + t.max_tokens, 2048);
    truncated += s.truncated;
  }
  EXPECT_EQ(truncated, 20);  // 40+ turns of ~250 tokens cannot fit in 2048
}

TEST(WorkloadTest, SameSeedSameRequestsOtherSeedOtherRequests) {
  for (const char* spec : {"random:5-50:1-9", "chat", "agentic:system=50,turns=2-4"}) {
    const WorkloadGenerator g1 = Gen(spec, 42), g2 = Gen(spec, 42), g3 = Gen(spec, 43);
    for (int i : {0, 7, 1000}) {
      const Session a = g1.MakeSession(i), b = g2.MakeSession(i), c = g3.MakeSession(i);
      ASSERT_EQ(a.turns.size(), b.turns.size()) << spec;
      for (size_t t = 0; t < a.turns.size(); ++t) {
        EXPECT_EQ(a.PromptIds(t), b.PromptIds(t)) << spec;
        EXPECT_EQ(a.turns[t].max_tokens, b.turns[t].max_tokens) << spec;
        EXPECT_EQ(a.turns[t].think_before_s, b.turns[t].think_before_s) << spec;
      }
      EXPECT_NE(a.PromptIds(0), c.PromptIds(0)) << spec;
    }
    // Sessions are independent of the order they are made in.
    EXPECT_EQ(g1.MakeSession(3).PromptIds(0), Gen(spec, 42).MakeSession(3).PromptIds(0));
  }
}

}  // namespace
}  // namespace tokenmill::loadgen
