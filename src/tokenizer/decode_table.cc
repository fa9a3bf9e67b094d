// Turns a tokenizer.json "decoder" into ModelTokenizer's per-token decode table. HF's
// decoders act per token except Fuse and what follows it, so every step up to the first
// whole-text step is folded into each token's bytes once, at load time.
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tokenizer/model_tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenmill/core/status.h"

namespace tokenmill::tokenizer_internal {
namespace {

struct DecodeStep {
  enum Kind { kReplace, kByteFallback, kByteLevel, kMetaspace, kStrip, kFuse, kWordPiece } kind;
  std::string pattern{}, content{};
  int start = 0, stop = 0;
  bool metaspace_strips_first = true;
};

absl::Status Flatten(const nlohmann::json& j, std::vector<DecodeStep>* steps) {
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& sub : j.at("decoders")) TM_RETURN_IF_ERROR(Flatten(sub, steps));
  } else if (type == "Replace") {
    const auto& p = j.at("pattern");
    if (!p.contains("String")) {
      return absl::UnimplementedError("decoder Replace with a Regex pattern is not supported");
    }
    steps->push_back({.kind = DecodeStep::kReplace,
                      .pattern = p.at("String").get<std::string>(),
                      .content = j.at("content").get<std::string>()});
  } else if (type == "ByteFallback") {
    steps->push_back({.kind = DecodeStep::kByteFallback});
  } else if (type == "ByteLevel") {
    steps->push_back({.kind = DecodeStep::kByteLevel});
  } else if (type == "Fuse") {
    steps->push_back({.kind = DecodeStep::kFuse});
  } else if (type == "Strip") {
    steps->push_back({.kind = DecodeStep::kStrip,
                      .content = j.at("content").get<std::string>(),
                      .start = j.value("start", 0),
                      .stop = j.value("stop", 0)});
  } else if (type == "Metaspace") {
    DecodeStep step{.kind = DecodeStep::kMetaspace,
                    .pattern = j.value("replacement", std::string("\u2581"))};
    const std::string scheme = j.value("prepend_scheme", std::string());
    step.metaspace_strips_first =
        scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
    steps->push_back(std::move(step));
  } else if (type == "WordPiece") {
    steps->push_back({.kind = DecodeStep::kWordPiece, .pattern = j.value("prefix", "##")});
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported decoder type '", type, "'"));
  }
  return absl::OkStatus();
}

std::optional<uint8_t> ParseByteToken(std::string_view s) {
  if (s.size() != 6 || !s.starts_with("<0x") || s[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(s[3]), lo = hex(s[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

// Strips up to `start` leading and `stop` trailing copies of the one-character `content`.
std::string StripChars(std::string s, const std::string& content, int start, int stop) {
  for (int i = 0; i < start && s.starts_with(content); ++i) s.erase(0, content.size());
  for (int i = 0; i < stop && s.ends_with(content); ++i) s.resize(s.size() - content.size());
  return s;
}

// Runs the per-token steps on one token string.
std::string DecodePiece(const std::vector<DecodeStep>& steps, std::string s, bool is_first,
                        bool* is_byte) {
  *is_byte = false;
  for (const DecodeStep& step : steps) {
    switch (step.kind) {
      case DecodeStep::kReplace:
        s = absl::StrReplaceAll(s, {{step.pattern, step.content}});
        break;
      case DecodeStep::kByteFallback:
        if (auto b = ParseByteToken(s)) {
          s.assign(1, static_cast<char>(*b));
          *is_byte = true;
        }
        break;
      case DecodeStep::kByteLevel: {
        std::string bytes;
        if (ByteLevelDecode(s, &bytes)) s = std::move(bytes);
        break;
      }
      case DecodeStep::kMetaspace:
        s = absl::StrReplaceAll(
            s, {{step.pattern, is_first && step.metaspace_strips_first ? "" : " "}});
        break;
      case DecodeStep::kStrip:
        s = StripChars(std::move(s), step.content, step.start, step.stop);
        break;
      case DecodeStep::kWordPiece:
        if (!is_first) {
          s = s.starts_with(step.pattern) ? s.substr(step.pattern.size()) : " " + s;
        }
        break;
      case DecodeStep::kFuse:
        break;
    }
  }
  return s;
}

}  // namespace

absl::Status BuildDecodeTable(const nlohmann::json& decoder, ModelTokenizer::Parts* parts) {
  std::vector<DecodeStep> steps;
  if (!decoder.is_null()) TM_RETURN_IF_ERROR(Flatten(decoder, &steps));
  // Steps after Fuse see the whole text: only a leading-space Strip is supported there.
  std::vector<DecodeStep> per_token;
  bool fused = false;
  DecodeRules rules;
  for (const DecodeStep& step : steps) {
    if (step.kind == DecodeStep::kFuse) {
      fused = true;
      continue;
    }
    if (step.kind == DecodeStep::kByteFallback) rules.byte_fallback_runs = true;
    if (!fused) {
      per_token.push_back(step);
      continue;
    }
    if (step.kind == DecodeStep::kStrip && step.content == " " && step.stop == 0) {
      rules.num_strip_leading_spaces += step.start;
    } else if (step.kind == DecodeStep::kReplace || step.kind == DecodeStep::kByteLevel) {
      per_token.push_back(step);  // commute with concatenation
    } else {
      return absl::UnimplementedError("decoder step after Fuse is not supported");
    }
  }
  bool first_differs = false;
  for (const DecodeStep& s : per_token) {
    first_differs =
        first_differs || s.kind == DecodeStep::kMetaspace || s.kind == DecodeStep::kWordPiece;
  }
  const Vocab& vocab = *parts->vocab;
  const int32_t n = vocab.size();
  // HF decodes an added token from its content, normalized when the token is.
  std::vector<std::string> sources = vocab.stored;
  for (const AddedToken& t : parts->added_tokens) {
    sources[t.id] = t.content;
    if (t.normalized && !parts->normalizer.empty()) {
      auto normalized = parts->normalizer.Apply(t.content);
      if (normalized.ok()) sources[t.id] = *std::move(normalized);
    }
  }
  parts->piece_bytes.resize(n);
  parts->is_byte_token.assign(n, false);
  parts->first_piece_bytes.clear();
  if (first_differs) parts->first_piece_bytes.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    bool is_byte = false;
    parts->piece_bytes[id] = DecodePiece(per_token, sources[id], false, &is_byte);
    parts->is_byte_token[id] = is_byte;
    if (first_differs) {
      parts->first_piece_bytes[id] = DecodePiece(per_token, sources[id], true, &is_byte);
    }
  }
  parts->decode_rules = rules;
  return absl::OkStatus();
}

}  // namespace tokenmill::tokenizer_internal
