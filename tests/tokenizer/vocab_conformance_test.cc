// llama.cpp's tokenizer test vectors (testdata/vocab/ggml-vocab-*.gguf.inp/.out, made
// with add_special=false, parse_special=false) and the model-level goldens.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer_test_util.h"
#include "tokenmill/tokenizer/detokenizer.h"

namespace tokenmill {
namespace {

using testing::IdsToString;
using testing::LoadTestTokenizer;
using testing::ReadVocabVectors;
using testing::TestdataPath;

class VocabVectorsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectorsTest, MatchesLlamaCpp) {
  const std::string name = GetParam();
  const std::string rel = absl::StrCat("vocab/ggml-vocab-", name, ".gguf");
  TM_REQUIRE_TESTDATA(rel + ".out");
  auto tok = LoadTestTokenizer(rel);
  ASSERT_NE(tok, nullptr);
  const auto cases = ReadVocabVectors(TestdataPath(rel + ".inp"), TestdataPath(rel + ".out"));
  ASSERT_GT(cases.size(), 30u);
  int failures = 0;
  for (const auto& [text, expected] : cases) {
    auto ids = tok->Encode(text, {.add_special = false, .parse_special = false});
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(IdsToString(*ids), IdsToString(expected)) << name << " text: '" << text << "'";
    failures += *ids != expected;
  }
  EXPECT_EQ(failures, 0) << name;
}

INSTANTIATE_TEST_SUITE_P(Gguf, VocabVectorsTest,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "falcon", "mpt",
                                           "starcoder", "refact", "deepseek-coder", "deepseek-llm"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(VocabVectorsTest, BertBgeIsWordPieceAndReportedUnsupported) {
  TM_REQUIRE_TESTDATA("vocab/ggml-vocab-bert-bge.gguf");
  // WordPiece (tokenizer.ggml.model "bert") is not implemented: the loader must say so.
  auto tok = LoadTokenizer(TestdataPath("vocab/ggml-vocab-bert-bge.gguf"));
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(tok.status().message().find("bert"), std::string::npos) << tok.status();
}

TEST(ModelVocabTest, Stories260KPromptIdsMatchGolden) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  auto tok = LoadTestTokenizer("models/stories260K/stories260K.gguf");
  ASSERT_NE(tok, nullptr);
  const auto golden =
      nlohmann::json::parse(testing::ReadFileOrDie(TestdataPath("golden/stories260K_greedy.json")));
  int checked = 0;
  for (const auto& c : golden.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    const auto expected = c.at("prompt_token_ids").get<std::vector<int32_t>>();
    auto ids = tok->Encode(prompt, {});
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(IdsToString(*ids), IdsToString(expected)) << prompt;
    // The generated text streams as llama.cpp printed it, given the prompt as context.
    IncrementalDetokenizer detok(*tok, /*skip_special=*/true);  // llama.cpp hides BOS
    ASSERT_TRUE(detok.Prime(*ids).ok());
    std::string text;
    for (int32_t id : c.at("generated_token_ids").get<std::vector<int32_t>>()) {
      ASSERT_TRUE(detok.Add(id, &text).ok());
    }
    detok.Finish(&text);
    EXPECT_EQ(text, c.at("generated_text").get<std::string>());
    ++checked;
  }
  EXPECT_GT(checked, 0);
  EXPECT_TRUE(tok->add_bos_by_default());
  EXPECT_EQ(tok->bos_id(), 1);
}

TEST(ModelVocabTest, LlamaTinyRandomHelloWorld) {
  TM_REQUIRE_TESTDATA("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
  auto tok = LoadTestTokenizer("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
  ASSERT_NE(tok, nullptr);
  auto ids = tok->Encode("Hello world", {});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(IdsToString(*ids), "1 15043 3186");
  auto text = tok->Decode(*ids, /*skip_special=*/true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "Hello world");
}

}  // namespace
}  // namespace tokenmill
