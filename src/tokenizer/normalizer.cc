#include "tokenizer/normalizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tokenmill/core/status.h"

namespace tokenmill::tokenizer_internal {

absl::StatusOr<Normalizer> Normalizer::FromJson(const nlohmann::json& j) {
  Normalizer n;
  if (!j.is_null()) TM_RETURN_IF_ERROR(n.Add(j));
  return n;
}

Normalizer Normalizer::SentencePiece(std::string_view space_replacement, bool add_prefix) {
  Normalizer n;
  if (add_prefix) {
    n.steps_.push_back({.kind = Kind::kPrepend, .content = std::string(space_replacement)});
  }
  n.steps_.push_back(
      {.kind = Kind::kReplace, .pattern = " ", .content = std::string(space_replacement)});
  return n;
}

absl::Status Normalizer::Add(const nlohmann::json& j) {
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& sub : j.at("normalizers")) TM_RETURN_IF_ERROR(Add(sub));
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    const NormalForm form = type == "NFC"    ? NormalForm::kNFC
                            : type == "NFD"  ? NormalForm::kNFD
                            : type == "NFKC" ? NormalForm::kNFKC
                                             : NormalForm::kNFKD;
    steps_.push_back({.kind = Kind::kUnicode, .form = form});
  } else if (type == "Replace") {
    const auto& pattern = j.at("pattern");
    Step step{.kind = Kind::kReplace, .content = j.at("content").get<std::string>()};
    if (pattern.contains("String")) {
      step.pattern = pattern.at("String").get<std::string>();
    } else {
      step.kind = Kind::kReplaceRegex;
      TM_ASSIGN_OR_RETURN(auto re, Regex::Compile(pattern.at("Regex").get<std::string>()));
      step.regex = std::move(re);
    }
    steps_.push_back(std::move(step));
  } else if (type == "Prepend") {
    steps_.push_back({.kind = Kind::kPrepend, .content = j.at("prepend").get<std::string>()});
  } else if (type == "Lowercase") {
    steps_.push_back({.kind = Kind::kLowercase});
  } else if (type == "Strip") {
    steps_.push_back({.kind = Kind::kStrip,
                      .strip_left = j.value("strip_left", false),
                      .strip_right = j.value("strip_right", false)});
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported normalizer type '", type, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kUnicode: {
        TM_ASSIGN_OR_RETURN(s, Normalize(s, step.form));
        break;
      }
      case Kind::kReplace:
        if (!step.pattern.empty()) s = absl::StrReplaceAll(s, {{step.pattern, step.content}});
        break;
      case Kind::kReplaceRegex: {
        std::string out;
        size_t prev = 0;
        for (const auto& [b, e] : step.regex->FindAll(s)) {
          out.append(s, prev, b - prev);
          out += step.content;
          prev = e;
        }
        out.append(s, prev);
        s = std::move(out);
        break;
      }
      case Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.content);  // HF prepends to non-empty text only
        break;
      case Kind::kLowercase:
        s = Lowercase(s);
        break;
      case Kind::kStrip: {
        size_t b = 0, e = s.size();
        if (step.strip_left) {
          while (b < e) {
            size_t i = b;
            if (!IsWhitespace(NextCodepoint(s, &i))) break;
            b = i;
          }
        }
        if (step.strip_right) {
          while (e > b) {
            size_t start = e - 1;
            while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
            size_t i = start;
            if (!IsWhitespace(NextCodepoint(s, &i))) break;
            e = start;
          }
        }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

}  // namespace tokenmill::tokenizer_internal
