#include "tokenizer/pre_tokenizer.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tokenizer/unicode.h"
#include "tokenmill/core/status.h"

namespace tokenmill::tokenizer_internal {
namespace {

struct Segment {
  size_t begin, end;
  bool is_match;
};

// Matches of a regex (or any matcher) as a cover of [0, size) by gaps and matches.
std::vector<Segment> Cover(const std::vector<std::pair<size_t, size_t>>& matches, size_t size) {
  std::vector<Segment> segs;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) segs.push_back({prev, b, false});
    segs.push_back({b, e, true});
    prev = e;
  }
  if (prev < size) segs.push_back({prev, size, false});
  return segs;
}

// Every character for which `pred` holds is one match (HF's char-predicate patterns).
std::vector<std::pair<size_t, size_t>> CharMatches(std::string_view s,
                                                   const std::function<bool(uint32_t)>& pred) {
  std::vector<std::pair<size_t, size_t>> m;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    if (pred(NextCodepoint(s, &i))) m.emplace_back(b, i);
  }
  return m;
}

// HF SplitDelimiterBehavior applied to a cover.
std::vector<Segment> ApplyBehavior(std::vector<Segment> segs, SplitBehavior behavior) {
  std::vector<Segment> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return segs;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segs) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
    case SplitBehavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
  }
  return segs;
}

absl::StatusOr<SplitBehavior> ParseBehavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior '", name, "'"));
}

bool IsBertPunctuation(uint32_t cp) {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
         (cp >= 123 && cp <= 126) || IsPunctuation(cp);
}

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const nlohmann::json& j) {
  PreTokenizer p;
  if (!j.is_null()) TM_RETURN_IF_ERROR(p.Add(j));
  return p;
}

absl::StatusOr<PreTokenizer> PreTokenizer::ForPattern(const std::string& pattern) {
  PreTokenizer p;
  TM_ASSIGN_OR_RETURN(auto re, Regex::Compile(pattern));
  p.steps_.push_back({.kind = Kind::kRegex, .regex = std::move(re)});
  p.byte_level_ = true;
  return p;
}

absl::Status PreTokenizer::Add(const nlohmann::json& j) {
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& sub : j.at("pretokenizers")) TM_RETURN_IF_ERROR(Add(sub));
  } else if (type == "ByteLevel") {
    Step step{.kind = Kind::kByteLevel, .flag = j.value("add_prefix_space", true)};
    if (j.value("use_regex", true)) {
      TM_ASSIGN_OR_RETURN(auto re, Regex::Compile(std::string(kGpt2Pattern)));
      step.regex = std::move(re);
    }
    steps_.push_back(std::move(step));
    byte_level_ = true;
  } else if (type == "Split") {
    const auto& pattern = j.at("pattern");
    TM_ASSIGN_OR_RETURN(SplitBehavior behavior, ParseBehavior(j.at("behavior").get<std::string>()));
    Step step{.kind = Kind::kRegex, .behavior = behavior, .invert = j.value("invert", false)};
    if (pattern.contains("Regex")) {
      TM_ASSIGN_OR_RETURN(auto re, Regex::Compile(pattern.at("Regex").get<std::string>()));
      step.regex = std::move(re);
    } else {
      step.kind = Kind::kStringSplit;
      step.text = pattern.at("String").get<std::string>();
    }
    steps_.push_back(std::move(step));
  } else if (type == "Metaspace") {
    Step step{.kind = Kind::kMetaspace,
              .flag = j.value("split", true),
              .text = j.value("replacement", std::string("\u2581"))};
    const std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme.empty()) {
      step.prepend_scheme = j.value("add_prefix_space", true) ? 0 : 2;  // older files
    } else {
      step.prepend_scheme = scheme == "always" ? 0 : scheme == "first" ? 1 : 2;
    }
    steps_.push_back(std::move(step));
  } else if (type == "Digits") {
    steps_.push_back({.kind = Kind::kDigits, .flag = j.value("individual_digits", false)});
  } else if (type == "WhitespaceSplit") {
    steps_.push_back({.kind = Kind::kWhitespaceSplit, .behavior = SplitBehavior::kRemoved});
  } else if (type == "Whitespace") {
    TM_ASSIGN_OR_RETURN(auto re, Regex::Compile("\\w+|[^\\w\\s]+"));
    steps_.push_back({.kind = Kind::kRegex,
                      .regex = std::move(re),
                      .behavior = SplitBehavior::kRemoved,
                      .invert = true});
  } else if (type == "Punctuation") {
    TM_ASSIGN_OR_RETURN(SplitBehavior behavior,
                        ParseBehavior(j.value("behavior", std::string("Isolated"))));
    steps_.push_back({.kind = Kind::kPunctuation, .behavior = behavior});
  } else if (type == "BertPreTokenizer") {
    steps_.push_back({.kind = Kind::kWhitespaceSplit, .behavior = SplitBehavior::kRemoved});
    steps_.push_back({.kind = Kind::kPunctuation, .behavior = SplitBehavior::kIsolated});
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported pre_tokenizer type '", type, "'"));
  }
  return absl::OkStatus();
}

void PreTokenizer::Split(std::string_view segment, bool at_start,
                         std::vector<PreToken>* out) const {
  std::vector<PreToken> words;
  words.push_back({std::string(segment), at_start});
  for (const Step& step : steps_) ApplyStep(step, &words);
  for (PreToken& w : words) {
    if (!w.text.empty()) out->push_back(std::move(w));
  }
}

void PreTokenizer::ApplyStep(const Step& step, std::vector<PreToken>* words) const {
  std::vector<PreToken> next;
  next.reserve(words->size());
  for (PreToken& word : *words) {
    std::string& s = word.text;
    if (step.kind == Kind::kByteLevel && step.flag && !s.starts_with(' ')) s.insert(s.begin(), ' ');
    if (step.kind == Kind::kMetaspace) {
      s = absl::StrReplaceAll(s, {{" ", step.text}});
      const bool prepend = step.prepend_scheme == 0 || (step.prepend_scheme == 1 && word.at_start);
      if (prepend && !s.starts_with(step.text)) s.insert(0, step.text);
    }
    std::vector<Segment> segs;
    switch (step.kind) {
      case Kind::kRegex:
      case Kind::kByteLevel:
        if (step.regex == nullptr) {
          segs = {{0, s.size(), false}};
        } else {
          segs = Cover(step.regex->FindAll(s), s.size());
        }
        break;
      case Kind::kMetaspace:
      case Kind::kStringSplit: {
        const std::string& delim = step.text;
        std::vector<std::pair<size_t, size_t>> m;
        const bool do_split = step.kind == Kind::kStringSplit || step.flag;
        for (size_t p = 0;
             do_split && !delim.empty() && (p = s.find(delim, p)) != std::string::npos;
             p += delim.size()) {
          m.emplace_back(p, p + delim.size());
        }
        segs = Cover(m, s.size());
        break;
      }
      case Kind::kDigits:
        segs = Cover(CharMatches(s, IsNumeric), s.size());
        break;
      case Kind::kWhitespaceSplit:
        segs = Cover(CharMatches(s, IsWhitespace), s.size());
        break;
      case Kind::kPunctuation:
        segs = Cover(CharMatches(s, IsBertPunctuation), s.size());
        break;
    }
    if (step.invert) {
      for (Segment& seg : segs) seg.is_match = !seg.is_match;
    }
    SplitBehavior behavior = step.behavior;
    if (step.kind == Kind::kMetaspace) behavior = SplitBehavior::kMergedWithNext;
    if (step.kind == Kind::kDigits) {
      behavior = step.flag ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
    }
    for (const Segment& seg : ApplyBehavior(std::move(segs), behavior)) {
      if (seg.end > seg.begin) {
        next.push_back({s.substr(seg.begin, seg.end - seg.begin), word.at_start && seg.begin == 0});
      }
    }
  }
  *words = std::move(next);
}

absl::StatusOr<PreTokenizer> PreTokenizer::ForLlamaCppPre(const std::string& pre) {
  // llama.cpp llm_tokenizer_bpe: per pre-tokenizer type, regexes applied in sequence.
  static const char* kGpt2[] = {
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"};
  static const char* kLlama3[] = {
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
      "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  static const char* kQwen2[] = {
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  static const char* kStarcoder[] = {
      "\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"};
  static const char* kFalcon[] = {
      "[\\p{P}\\$\\+<=>\\^~\\|`]+",
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
      "[0-9][0-9][0-9]"};
  static const char* kDeepseekCoder[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                                         "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", "\\p{N}"};
  static const char* kDeepseekLlm[] = {
      "[\r\n]",
      "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-"
      "\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
      "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-"
      "\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15"
      "\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d"
      "\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb"
      "\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124"
      "\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184"
      "\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-"
      "\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a"
      "\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-"
      "\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+",
      "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
      "\\s+$",
      "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
      "\\p{N}+"};
  static const char* kBloom[] = {" ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"};
  static const char* kDefault[] = {
      "[\\p{P}\\$\\+<=>\\^~\\|]+",
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
      "[0-9][0-9][0-9]"};

  std::vector<const char*> exprs;
  auto use = [&exprs](const auto& list) { exprs.assign(std::begin(list), std::end(list)); };
  auto is = [&pre](std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (pre == n) return true;
    }
    return false;
  };
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx", "smaug-bpe",
          "chatglm-bpe", "gpt-4o", "superbpe", "kimi-k2"})) {
    use(kLlama3);
  } else if (is({"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "qwen35"})) {
    use(kQwen2);
  } else if (is({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
                 "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion"})) {
    use(kGpt2);
  } else if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                 "minerva-7b"})) {
    use(kStarcoder);
  } else if (is({"falcon"})) {
    use(kFalcon);
  } else if (is({"deepseek-coder"})) {
    use(kDeepseekCoder);
  } else if (is({"deepseek-llm"})) {
    use(kDeepseekLlm);
  } else if (is({"poro-chat", "bloom", "gpt3-finnish"})) {
    use(kBloom);
  } else {
    use(kDefault);
  }
  PreTokenizer p;
  for (const char* e : exprs) {
    TM_ASSIGN_OR_RETURN(auto re, Regex::Compile(e));
    p.steps_.push_back({.kind = Kind::kRegex, .regex = std::move(re)});
  }
  p.byte_level_ = true;
  return p;
}

}  // namespace tokenmill::tokenizer_internal
