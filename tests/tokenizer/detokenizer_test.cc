// IncrementalDetokenizer: streamed text equals Decode of the whole sequence on thousands
// of random id sequences per family, never splits a character, and keeps continuation
// spaces after Prime. Also the invalid-UTF-8 property and the demo byte tokenizer.
#include "tokenmill/tokenizer/detokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "tokenizer/tokenizer_test_util.h"
#include "tokenizer/unicode.h"

namespace tokenmill {
namespace {

using tokenizer_internal::AppendUtf8Lossy;
using tokenizer_internal::IsValidUtf8;

struct Family {
  const char* name;
  const char* path;  // under testdata ("" = the demo byte tokenizer)
  bool lossless;     // decode(encode(x)) == x for valid UTF-8 x
};

const Family kFamilies[] = {
    {"gpt2", "tokenizers/gpt2/tokenizer.json", true},
    {"llama2", "tokenizers/llama-2", true},
    {"mistral", "tokenizers/mistral-7b-instruct-v0.3", false},
    {"phi3", "tokenizers/phi-3-mini-4k-instruct", false},
    // SmolLM2's vocabulary lacks some byte tokens (0xF2...), whose bytes HF drops too.
    {"smollm2", "tokenizers/smollm2-135m-instruct", false},
    {"qwen25", "tokenizers/qwen2.5-0.5b-instruct", false},
    {"llama3", "tokenizers/llama-3", true},
    {"gguf_llama_spm", "vocab/ggml-vocab-llama-spm.gguf", true},
    {"gguf_gpt2", "vocab/ggml-vocab-gpt-2.gguf", true},
    {"bytes", "", true},
};

class FamilyTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    // Loaded once per family for all tests (loading Qwen's 151k vocab takes a second).
    static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
    const std::string path = GetParam().path;
    if (!path.empty()) TM_REQUIRE_TESTDATA(path);
    auto& slot = cache[path];
    if (slot == nullptr)
      slot = path.empty() ? MakeByteTokenizer() : testing::LoadTestTokenizer(path);
    tok_ = slot.get();
    ASSERT_NE(tok_, nullptr);
  }
  const Tokenizer* tok_ = nullptr;
};

// Random ids with the hard cases over-represented: byte tokens (UTF-8 leads and
// continuations), special tokens, tokens around CJK and emoji.
std::vector<int32_t> RandomIds(const Tokenizer& tok, std::mt19937& rng,
                               const std::vector<int32_t>& bytes,
                               const std::vector<int32_t>& specials) {
  std::uniform_int_distribution<int> len_dist(1, 40), kind_dist(0, 9);
  std::uniform_int_distribution<int32_t> id_dist(0, tok.vocab_size() - 1);
  std::vector<int32_t> ids(len_dist(rng));
  for (int32_t& id : ids) {
    const int kind = kind_dist(rng);
    if (kind < 4 && !bytes.empty()) {
      id = bytes[rng() % bytes.size()];
    } else if (kind == 4 && !specials.empty()) {
      id = specials[rng() % specials.size()];
    } else {
      id = id_dist(rng);
    }
  }
  return ids;
}

TEST_P(FamilyTest, StreamEqualsDecodeOnRandomIds) {
  std::vector<int32_t> bytes, specials;
  for (int32_t id = 0; id < tok_->vocab_size(); ++id) {
    if (tok_->IsByteToken(id) || tok_->TokenBytes(id, false).size() == 1) bytes.push_back(id);
    if (tok_->IsSpecial(id)) specials.push_back(id);
  }
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 1000; ++iter) {
    const std::vector<int32_t> ids = RandomIds(*tok_, rng, bytes, specials);
    for (bool skip : {false, true}) {
      auto whole = tok_->Decode(ids, skip);
      ASSERT_TRUE(whole.ok());
      ASSERT_TRUE(IsValidUtf8(*whole));
      IncrementalDetokenizer detok(*tok_, skip);
      std::string streamed;
      for (int32_t id : ids) {
        std::string chunk;
        ASSERT_TRUE(detok.Add(id, &chunk).ok());
        ASSERT_TRUE(IsValidUtf8(chunk)) << "a character was split";
        // Emitted text is final: it is a prefix of the whole decode.
        streamed += chunk;
        ASSERT_EQ(whole->compare(0, streamed.size(), streamed), 0)
            << "emitted text was revised, iter " << iter << " " << testing::IdsToString(ids);
      }
      detok.Finish(&streamed);
      ASSERT_EQ(streamed, *whole) << "iter " << iter << " ids " << testing::IdsToString(ids);
    }
  }
}

TEST_P(FamilyTest, StreamsMultibyteTextWholeCharacters) {
  const std::string text =
      "\u4f60\u597d\uff0c\u4e16\u754c\uff01 \U0001F468\u200D\U0001F469\u200D"
      "\U0001F467 caf\u00e9 \u0928\u092e\u0938\u094d\u0924\u0947 \U0001F600!";
  auto ids = tok_->Encode(text, {.add_special = false});
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detok(*tok_);
  std::string streamed;
  for (int32_t id : *ids) {
    std::string chunk;
    ASSERT_TRUE(detok.Add(id, &chunk).ok());
    ASSERT_TRUE(IsValidUtf8(chunk));
    streamed += chunk;
  }
  detok.Finish(&streamed);
  EXPECT_EQ(streamed, *tok_->Decode(*ids));
  if (GetParam().lossless) {
    EXPECT_EQ(streamed, text);
  }
}

TEST_P(FamilyTest, PrimedStreamKeepsTheContinuationSpace) {
  auto prompt = tok_->Encode("Once upon", {});
  auto all = tok_->Encode("Once upon a time", {});
  ASSERT_TRUE(prompt.ok() && all.ok());
  ASSERT_GT(all->size(), prompt->size());
  ASSERT_TRUE(std::equal(prompt->begin(), prompt->end(), all->begin()));
  IncrementalDetokenizer detok(*tok_, /*skip_special=*/true);
  ASSERT_TRUE(detok.Prime(*prompt).ok());
  std::string streamed;
  for (size_t i = prompt->size(); i < all->size(); ++i)
    ASSERT_TRUE(detok.Add((*all)[i], &streamed).ok());
  detok.Finish(&streamed);
  EXPECT_EQ(streamed, " a time");
}

TEST_P(FamilyTest, RandomBytesNeverCrashAndAreReplacedLikeHf) {
  std::mt19937 rng(99);
  for (int iter = 0; iter < 1000; ++iter) {
    std::string input(rng() % 64, '\0');
    for (char& c : input) {
      // Mostly high bytes so that invalid sequences are common.
      c = static_cast<char>(rng() % 3 == 0 ? 0x20 + rng() % 0x60 : 0x80 + rng() % 0x80);
    }
    for (bool parse_special : {true, false}) {
      auto ids = tok_->Encode(input, {.add_special = false, .parse_special = parse_special});
      ASSERT_TRUE(ids.ok()) << ids.status();
      auto text = tok_->Decode(*ids);
      ASSERT_TRUE(text.ok());
      ASSERT_TRUE(IsValidUtf8(*text));
      std::string repaired;
      AppendUtf8Lossy(input, &repaired);
      auto ids_repaired =
          tok_->Encode(repaired, {.add_special = false, .parse_special = parse_special});
      ASSERT_TRUE(ids_repaired.ok());
      EXPECT_EQ(*ids, *ids_repaired) << "invalid UTF-8 must encode as its U+FFFD repair";
      if (GetParam().lossless) {
        EXPECT_EQ(*text, repaired);
      }
    }
  }
}

TEST_P(FamilyTest, OutOfRangeIdsAreErrors) {
  const int32_t bad[] = {tok_->vocab_size()};
  auto text = tok_->Decode(bad);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  IncrementalDetokenizer detok(*tok_);
  std::string out;
  EXPECT_FALSE(detok.Add(-1, &out).ok());
}

TEST_P(FamilyTest, ConcurrentEncodeMatchesSerial) {
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) {
    texts.push_back("Thread " + std::to_string(i) + ": caf\u00e9 \u4f60\u597d  \n\t<s> x=" +
                    std::to_string(i * 7919) + std::string(i % 5, ' ') + "\U0001F600 done.");
  }
  std::vector<std::vector<int32_t>> serial;
  for (const auto& t : texts) serial.push_back(*tok_->Encode(t, {}));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = t; i < texts.size(); i += 2) {
          if (*tok_->Encode(texts[i], {}) != serial[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest, ::testing::ValuesIn(kFamilies),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ByteTokenizerTest, RawBytesWithBosAndEos) {
  auto tok = MakeByteTokenizer();
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{257});
  EXPECT_TRUE(tok->add_bos_by_default());
  auto ids = tok->Encode("h\u00e9</s>", {});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{256, 104, 0xC3, 0xA9, 257}));
  auto plain = tok->Encode("h</s>", {.add_special = false, .parse_special = false});
  EXPECT_EQ(plain->size(), 5u);
  EXPECT_EQ(*tok->Decode(*ids), "<s>h\u00e9</s>");
  EXPECT_EQ(*tok->Decode(*ids, /*skip_special=*/true), "h\u00e9");
  EXPECT_EQ(tok->TokenString(0x41), "<0x41>");
  EXPECT_EQ(tok->TokenToId("</s>"), 257);
}

TEST(LoadTokenizerTest, ErrorsNameThePath) {
  auto missing = LoadTokenizer("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent"), std::string::npos);
  const std::string dir = ::testing::TempDir() + "/tm_tok_bad";
  std::filesystem::create_directories(dir);
  { std::ofstream(dir + "/tokenizer.json") << "{ not json"; }
  auto bad = LoadTokenizer(dir);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("tokenizer.json"), std::string::npos);
  {
    std::ofstream(dir + "/tokenizer.json")
        << R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})";
  }
  auto wordpiece = LoadTokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(wordpiece.status().code(), absl::StatusCode::kUnimplemented);
  {
    std::ofstream(dir + "/tokenizer.json")
        << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})";
  }
  auto bad_merge = LoadTokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(bad_merge.status().code(), absl::StatusCode::kInvalidArgument) << bad_merge.status();
}

TEST(SpecialTokensTest, FamiliesReportTheirConfiguredTokens) {
  TM_REQUIRE_TESTDATA("tokenizers/llama-3/tokenizer.model");
  auto llama3 = testing::LoadTestTokenizer("tokenizers/llama-3");
  EXPECT_EQ(llama3->bos_id(), 128000);
  EXPECT_TRUE(llama3->add_bos_by_default());
  const auto eos = llama3->eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), 128009), eos.end());  // <|eot_id|>
  EXPECT_EQ(llama3->TokenToId("<|start_header_id|>"), 128006);
  EXPECT_EQ(*llama3->Encode("<|eot_id|>", {.add_special = false}), std::vector<int32_t>{128009});
  auto qwen = testing::LoadTestTokenizer("tokenizers/qwen2.5-0.5b-instruct");
  EXPECT_EQ(qwen->bos_id(), -1);
  EXPECT_FALSE(qwen->add_bos_by_default());
  EXPECT_EQ(qwen->eos_ids().front(), 151645);  // <|im_end|>
  EXPECT_EQ(qwen->pad_id(), 151643);
  EXPECT_FALSE(qwen->chat_template().empty());
  auto phi3 = testing::LoadTestTokenizer("tokenizers/phi-3-mini-4k-instruct");
  EXPECT_FALSE(phi3->add_bos_by_default());
  EXPECT_EQ(phi3->eos_ids().front(), 32000);  // <|endoftext|>
  auto mistral = testing::LoadTestTokenizer("tokenizers/mistral-7b-instruct-v0.3");
  EXPECT_TRUE(mistral->add_bos_by_default());
  EXPECT_EQ(*mistral->Encode("[INST]", {.add_special = false}), std::vector<int32_t>{3});
  // Never a doubled BOS: a template that already starts with BOS is encoded without add_special.
  auto ids = mistral->Encode("<s>[INST] hi [/INST]", {.add_special = false});
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 1), 1);
}

}  // namespace
}  // namespace tokenmill
