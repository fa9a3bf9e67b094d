// Matches the committed reference encodings (tests/reference/tokenizer/goldens, made by
// make_tokenizer_goldens.py with HF tokenizers / transformers / tiktoken) exactly, and
// decode(encode(x)) == x wherever the reference decodes losslessly.
#include <gtest/gtest.h>

#include <filesystem>

#include "nlohmann/json.hpp"
#include "tokenizer/loaders.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tokenmill {
namespace {

using nlohmann::json;
using testing::IdsToString;

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, MatchesReference) {
  const std::string path =
      testing::SourceDir() + "/tests/reference/tokenizer/goldens/" + GetParam() + ".json";
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  const json golden = json::parse(testing::ReadFileOrDie(path));
  const std::string load = golden.at("load").get<std::string>();
  TM_REQUIRE_TESTDATA(load);
  auto tok = testing::LoadTestTokenizer(load);
  ASSERT_NE(tok, nullptr);
  const auto prefix = golden.at("prefix").get<std::vector<int32_t>>();
  int num_cases = 0, num_bad_ids = 0, num_bad_text = 0;
  for (const json& c : golden.at("cases")) {
    ++num_cases;
    const std::string text = c.at("text").get<std::string>();
    const auto expected = c.at("ids").get<std::vector<int32_t>>();
    auto ids = tok->Encode(text, {});
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (*ids != expected) {
      ++num_bad_ids;
      ADD_FAILURE() << GetParam() << " text: '" << text << "'\n  got  " << IdsToString(*ids)
                    << "\n  want " << IdsToString(expected);
    }
    if (c.contains("ids_no_special")) {
      auto plain = tok->Encode(text, {.add_special = false, .parse_special = false});
      ASSERT_TRUE(plain.ok());
      EXPECT_EQ(IdsToString(*plain),
                IdsToString(c.at("ids_no_special").get<std::vector<int32_t>>()))
          << GetParam() << " (parse_special off) text: '" << text << "'";
    }
    ASSERT_GE(expected.size(), prefix.size());
    const std::span<const int32_t> content(expected.data() + prefix.size(),
                                           expected.size() - prefix.size());
    auto decoded = tok->Decode(content, false);
    ASSERT_TRUE(decoded.ok());
    const std::string want = c.contains("decoded") ? c.at("decoded").get<std::string>() : text;
    if (*decoded != want) {
      ++num_bad_text;
      ADD_FAILURE() << GetParam() << " decode of '" << text << "'\n  got  '" << *decoded
                    << "'\n  want '" << want << "'";
    }
  }
  EXPECT_GE(num_cases, 100);
  EXPECT_EQ(num_bad_ids, 0);
  EXPECT_EQ(num_bad_text, 0);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenTest,
                         ::testing::Values("gpt2", "llama-2", "mistral-7b-instruct-v0.3",
                                           "phi-3-mini-4k-instruct", "smollm2-135m-instruct",
                                           "qwen2.5-0.5b-instruct", "llama-3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace tokenmill

namespace tokenmill {
namespace {

// Tiny tokenizers trained by the reference script to cover pipeline parts the real
// files do not use (Metaspace split/prepend, NFKC/NFD/Lowercase/Strip/regex Replace,
// Split/Digits/Punctuation/WhitespaceSplit, unk fusing, subword affixes, lstrip/rstrip/
// single_word added tokens).
TEST(SyntheticGoldenTest, MatchesReference) {
  const std::string path =
      testing::SourceDir() + "/tests/reference/tokenizer/goldens/synthetic.json";
  const nlohmann::json golden = nlohmann::json::parse(testing::ReadFileOrDie(path));
  int num_checked = 0;
  for (const auto& t : golden.at("tokenizers")) {
    const std::string name = t.at("name").get<std::string>();
    auto tok = tokenizer_internal::LoadHfTokenizer(t.at("tokenizer"), name, "");
    ASSERT_TRUE(tok.ok()) << name << ": " << tok.status();
    for (const auto& c : t.at("cases")) {
      const std::string text = c.at("text").get<std::string>();
      const auto expected = c.at("ids").get<std::vector<int32_t>>();
      auto ids = (*tok)->Encode(text, {});
      ASSERT_TRUE(ids.ok());
      EXPECT_EQ(testing::IdsToString(*ids), testing::IdsToString(expected))
          << name << " text: '" << text << "'";
      auto decoded = (*tok)->Decode(expected, false);
      ASSERT_TRUE(decoded.ok());
      EXPECT_EQ(*decoded, c.at("decoded").get<std::string>()) << name << " text: '" << text << "'";
      ++num_checked;
    }
  }
  EXPECT_GE(num_checked, 30);
}

}  // namespace
}  // namespace tokenmill
