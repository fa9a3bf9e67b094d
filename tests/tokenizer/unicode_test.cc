// UTF-8 repair (maximal-subpart U+FFFD replacement, as Rust's from_utf8_lossy and
// Python's errors="replace"), the GPT-2 byte map and the PCRE2 wrapper.
#include "tokenizer/unicode.h"

#include <gtest/gtest.h>

#include "tokenizer/regex.h"

namespace tokenmill::tokenizer_internal {
namespace {

std::string Lossy(std::string_view s) {
  std::string out;
  AppendUtf8Lossy(s, &out);
  return out;
}

TEST(Utf8LossyTest, ReplacesMaximalSubpartsLikePython) {
  const std::string r(kReplacementChar);
  // Expectations from Python: bytes.decode("utf-8", "replace").
  EXPECT_EQ(Lossy("\xF0\x80"), r + r);
  EXPECT_EQ(Lossy("\xE4\xBD"), r);
  EXPECT_EQ(Lossy("\xED\xA0\x80"), r + r + r);  // surrogate
  EXPECT_EQ(Lossy("a\xFF"
                  "b"),
            "a" + r + "b");
  EXPECT_EQ(Lossy("\xE4\xBD"
                  "A"),
            r + "A");
  EXPECT_EQ(Lossy("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(Lossy("\xC0\xAF"), r + r);                  // overlong
  EXPECT_EQ(Lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(Utf8LossyTest, CompletePrefixHoldsBackAnUnfinishedCharacter) {
  std::string out;
  EXPECT_EQ(AppendUtf8LossyComplete("ab\xE2\x82", &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(AppendUtf8LossyComplete("ab\xE2\x82\xAC", &out), 5u);
  EXPECT_EQ(out, "ab\xE2\x82\xAC");
  out.clear();
  // A lead byte followed by a non-continuation is final: replaced, not held back.
  EXPECT_EQ(AppendUtf8LossyComplete("\xE2"
                                    "a",
                                    &out),
            2u);
  EXPECT_EQ(out, std::string(kReplacementChar) + "a");
}

TEST(ByteLevelTest, MapsEveryByteAndBack) {
  EXPECT_EQ(ByteLevelEncode(" "), "\xC4\xA0");   // 'Ġ'
  EXPECT_EQ(ByteLevelEncode("\n"), "\xC4\x8A");  // 'Ċ'
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(ByteLevelDecode(ByteLevelEncode(all), &back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(ByteLevelDecode("a b", &back));  // ' ' itself is not in the map
}

TEST(RegexTest, UnicodeClassesAndWhiteSpaceLikeOniguruma) {
  auto re = Regex::Compile("\\s+(?!\\S)|\\p{L}+|\\p{N}");
  ASSERT_TRUE(re.ok()) << re.status();
  const std::string text = "ab\xC2\x85\xC2\x85x 12";  // U+0085 is White_Space
  const auto m = (*re)->FindAll(text);
  ASSERT_EQ(m.size(), 5u);  // ab, U+0085, x, 1, 2 (the second U+0085 precedes x)
  EXPECT_EQ(text.substr(m[0].first, m[0].second - m[0].first), "ab");
  EXPECT_EQ(text.substr(m[1].first, m[1].second - m[1].first), "\xC2\x85");
  EXPECT_FALSE(Regex::Compile("(unclosed").ok());
}

}  // namespace
}  // namespace tokenmill::tokenizer_internal
