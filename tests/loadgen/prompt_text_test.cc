// Text prompts re-tokenize to exactly the requested length, for every tokenizer family.
#include "tokenmill/loadgen/prompt_text.h"

#include "gtest/gtest.h"
#include "loadgen/rng.h"
#include "testing/testdata.h"

namespace tokenmill::loadgen {
namespace {

void ExpectExactLengths(const Tokenizer& tok, const std::string& name) {
  auto src = MakeTokenSource(tok);
  ASSERT_TRUE(src.ok()) << name << ": " << src.status();
  auto empty = CountPromptTokens(tok, "");
  ASSERT_TRUE(empty.ok());
  Rng rng(11, 0);
  for (int n : {2, 3, 7, 16, 64, 257, 1000}) {
    if (n <= *empty) continue;
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<int32_t> ids;
      if (src->bos_id >= 0) ids.push_back(src->bos_id);
      while (static_cast<int>(ids.size()) < n) {
        ids.push_back(src->content_ids[rng.UniformInt(0, src->content_ids.size() - 1)]);
      }
      auto text = PromptTextOfLength(tok, *src, ids, 1000 * n + trial);
      ASSERT_TRUE(text.ok()) << name << " n=" << n << ": " << text.status();
      auto count = CountPromptTokens(tok, *text);
      ASSERT_TRUE(count.ok());
      EXPECT_EQ(*count, n) << name << ": '" << *text << "'";
    }
  }
}

TEST(PromptTextTest, ByteTokenizer) {
  auto tok = MakeByteTokenizer();
  ExpectExactLengths(*tok, "byte");
  // BOS is one of the counted tokens: a one-token text prompt cannot exist.
  auto src = MakeTokenSource(*tok);
  const std::vector<int32_t> one = {256};
  EXPECT_FALSE(PromptTextOfLength(*tok, *src, one, 1).ok());
}

TEST(PromptTextTest, EveryTokenizerFamily) {
  const std::vector<std::string> paths = {
      "models/stories260K/stories260K.gguf",  // SentencePiece BPE, byte fallback
      "tokenizers/llama-2",                   // tokenizer.json, SentencePiece style
      "tokenizers/qwen2.5-0.5b-instruct",     // byte-level BPE, vocab.json + merges
      "tokenizers/llama-3",                   // tiktoken
  };
  int tested = 0;
  for (const std::string& p : paths) {
    const std::string path = testing::TestdataPath(p);
    if (path.empty()) continue;
    auto tok = LoadTokenizer(path);
    ASSERT_TRUE(tok.ok()) << p << ": " << tok.status();
    ExpectExactLengths(**tok, p);
    ++tested;
  }
  if (tested == 0) GTEST_SKIP() << "testdata absent";
}

TEST(PromptTextTest, ExtendedPromptsShareTheirTextPrefix) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  auto tok = LoadTokenizer(testing::TestdataPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(tok.ok());
  auto src = MakeTokenSource(**tok);
  std::vector<int32_t> ids = {src->bos_id};
  Rng rng(3, 0);
  for (int i = 0; i < 300; ++i) ids.push_back(src->content_ids[rng.UniformInt(0, 100)]);
  auto shorter = PromptTextOfLength(**tok, *src, std::span(ids).first(200), 1);
  auto longer = PromptTextOfLength(**tok, *src, ids, 1);
  ASSERT_TRUE(shorter.ok() && longer.ok());
  // Only the repaired tail may differ: most of the shorter text is a prefix of the longer.
  size_t common = 0;
  while (common < shorter->size() && (*shorter)[common] == (*longer)[common]) ++common;
  EXPECT_GT(common, shorter->size() * 9 / 10);
}

}  // namespace
}  // namespace tokenmill::loadgen
