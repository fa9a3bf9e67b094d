// Expected encodings from Hugging Face transformers 4.57.1 (vendored by
// swift-transformers, testdata/tokenizers/conformance) for the real tokenizer files.
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tokenizer/loaders.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tokenmill {
namespace {

using nlohmann::json;
using testing::IdsToString;
using testing::LoadTestTokenizer;
using testing::ReadFileOrDie;
using testing::TestdataPath;

constexpr char kConf[] = "tokenizers/conformance/";

json ReadJson(const std::string& rel) { return json::parse(ReadFileOrDie(TestdataPath(rel))); }

struct Baseline {
  std::string file;       // under conformance/
  std::string tokenizer;  // under testdata/
};

// Checks ids and both decodes of every entry; `entries` maps id -> entry.
void CheckEntries(const Tokenizer& tok, const std::map<std::string, std::string>& inputs,
                  const std::vector<std::pair<std::string, json>>& entries) {
  ASSERT_FALSE(entries.empty());
  for (const auto& [id, e] : entries) {
    const std::string& text = inputs.at(id);
    auto ids = tok.Encode(text, {});
    ASSERT_TRUE(ids.ok()) << ids.status();
    const auto expected = e.at("input_ids").get<std::vector<int32_t>>();
    EXPECT_EQ(IdsToString(*ids), IdsToString(expected)) << id << ": " << text;
    auto with = tok.Decode(expected, false);
    auto skip = tok.Decode(expected, true);
    ASSERT_TRUE(with.ok() && skip.ok());
    EXPECT_EQ(*with, e.at("decoded_with_special").get<std::string>()) << id;
    EXPECT_EQ(*skip, e.at("decoded_skip_special").get<std::string>()) << id;
  }
}

void PrintTo(const Baseline& b, std::ostream* os) { *os << b.file; }

class MultilingualV1Test : public ::testing::TestWithParam<Baseline> {};

TEST_P(MultilingualV1Test, MatchesTransformers) {
  const std::string dir = std::string(kConf) + "swift-transformers-multilingual-v1/";
  TM_REQUIRE_TESTDATA(dir + "inputs.json");
  auto tok = LoadTestTokenizer(GetParam().tokenizer);
  ASSERT_NE(tok, nullptr);
  std::map<std::string, std::string> inputs;
  const json input_json = ReadJson(dir + "inputs.json");
  for (const auto& in : input_json.at("inputs")) {
    inputs[in.at("id").get<std::string>()] = in.at("text").get<std::string>();
  }
  std::vector<std::pair<std::string, json>> entries;
  const json baseline = ReadJson(dir + "baselines/" + GetParam().file);
  for (const auto& [id, e] : baseline.at("entries").items()) {
    entries.emplace_back(id, e);
  }
  CheckEntries(*tok, inputs, entries);
}

INSTANTIATE_TEST_SUITE_P(
    Files, MultilingualV1Test,
    ::testing::Values(Baseline{"openai-community__gpt2.json", "tokenizers/gpt2/tokenizer.json"},
                      Baseline{"Qwen__Qwen2.5-0.5B.json", "tokenizers/qwen2.5-0.5b-instruct"},
                      Baseline{"TinyLlama__TinyLlama-1.1B-Chat-v1.0.json", "tokenizers/llama-2"}),
    [](const auto& info) { return std::to_string(info.index); });

class MultilingualV2Test : public ::testing::TestWithParam<Baseline> {};

TEST_P(MultilingualV2Test, MatchesTransformers) {
  const std::string dir = std::string(kConf) + "swift-transformers-multilingual-v2/";
  TM_REQUIRE_TESTDATA(dir + "inputs.json");
  auto tok = LoadTestTokenizer(GetParam().tokenizer);
  ASSERT_NE(tok, nullptr);
  std::map<std::string, std::string> inputs;
  const json input_json = ReadJson(dir + "inputs.json");
  for (const auto& in : input_json) {
    inputs[in.at("id").get<std::string>()] = in.at("text").get<std::string>();
  }
  std::vector<std::pair<std::string, json>> entries;
  const json baseline = ReadJson(dir + "baselines/" + GetParam().file);
  for (const auto& e : baseline.at("entries")) {
    entries.emplace_back(e.at("id").get<std::string>(), e);
  }
  CheckEntries(*tok, inputs, entries);
}

INSTANTIATE_TEST_SUITE_P(
    Files, MultilingualV2Test,
    ::testing::Values(Baseline{"gpt2_multilingual.json", "tokenizers/gpt2/tokenizer.json"},
                      Baseline{"qwen2_5_multilingual.json", "tokenizers/qwen2.5-0.5b-instruct"},
                      Baseline{"tinyllama_multilingual.json", "tokenizers/llama-2"}),
    [](const auto& info) { return std::to_string(info.index); });

class EncodedTest : public ::testing::TestWithParam<Baseline> {};

TEST_P(EncodedTest, MatchesTransformers) {
  const std::string rel = std::string(kConf) + "swift-transformers-encoded/" + GetParam().file;
  TM_REQUIRE_TESTDATA(rel);
  auto tok = LoadTestTokenizer(GetParam().tokenizer);
  ASSERT_NE(tok, nullptr);
  const json j = ReadJson(rel);
  auto ids = tok->Encode(j.at("text").get<std::string>(), {});
  ASSERT_TRUE(ids.ok());
  const auto expected = j.at("token_ids").get<std::vector<int32_t>>();
  EXPECT_EQ(IdsToString(*ids), IdsToString(expected));
  auto text = tok->Decode(expected, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, j.at("decoded_text").get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(Files, EncodedTest,
                         ::testing::Values(Baseline{"gpt2_encoded_tokens.json", "tokenizers/gpt2"},
                                           Baseline{"llama_encoded.json", "tokenizers/llama-2"},
                                           Baseline{"llama_3.2_encoded.json",
                                                    "tokenizers/llama-3"}),
                         [](const auto& info) { return std::to_string(info.index); });

// The GPT-2 vocab.json + merges.txt layout gives the same tokenizer as its tokenizer.json.
TEST(VocabMergesTest, Gpt2LayoutMatchesTokenizerJson) {
  TM_REQUIRE_TESTDATA("tokenizers/gpt2/merges.txt");
  auto a = tokenizer_internal::LoadVocabMerges(TestdataPath("tokenizers/gpt2"));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = LoadTestTokenizer("tokenizers/gpt2/tokenizer.json");
  ASSERT_NE(b, nullptr);
  for (const char* text : {"Hello world<|endoftext|> it's 1234 \u4f60\u597d  \n\t x",
                           "   leading spaces", "emoji \U0001F600\U0001F44D\U0001F3FD"}) {
    auto ia = (*a)->Encode(text, {});
    auto ib = b->Encode(text, {});
    ASSERT_TRUE(ia.ok() && ib.ok());
    EXPECT_EQ(*ia, *ib) << text;
  }
  EXPECT_EQ((*a)->vocab_size(), b->vocab_size());
  EXPECT_TRUE((*a)->IsSpecial(50256));
}

}  // namespace
}  // namespace tokenmill
