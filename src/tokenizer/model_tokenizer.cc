#include "tokenizer/model_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"
#include "tokenmill/core/status.h"
#include "tokenmill/tokenizer/detokenizer.h"

namespace tokenmill::tokenizer_internal {

ModelTokenizer::ModelTokenizer(Parts parts) : parts_(std::move(parts)) {
  const int32_t n = parts_.vocab->size();
  TM_CHECK(parts_.model != nullptr);
  TM_CHECK(static_cast<int32_t>(parts_.piece_bytes.size()) == n);
  TM_CHECK(static_cast<int32_t>(parts_.is_byte_token.size()) == n);
  TM_CHECK(static_cast<int32_t>(parts_.special.size()) == n);
  TM_CHECK(parts_.first_piece_bytes.empty() ||
           static_cast<int32_t>(parts_.first_piece_bytes.size()) == n);
  std::vector<AddedToken> raw, normalized;
  for (const AddedToken& t : parts_.added_tokens) {
    TM_CHECK(t.id >= 0 && t.id < n, "added token id ", t.id);
    if (t.normalized && !parts_.normalizer.empty()) {
      // HF matches a normalized added token by its normalized content ("<s>" -> "▁<s>").
      AddedToken copy = t;
      auto content = parts_.normalizer.Apply(t.content);
      if (content.ok()) copy.content = *std::move(content);
      normalized.push_back(std::move(copy));
    } else {
      raw.push_back(t);
    }
  }
  raw_matcher_ = AddedTokenMatcher(std::move(raw));
  normalized_matcher_ = AddedTokenMatcher(std::move(normalized));
  stored_to_id_.reserve(n);
  for (int32_t id = 0; id < n; ++id) stored_to_id_.try_emplace(parts_.vocab->stored[id], id);
}

void ModelTokenizer::EncodeNormalized(std::string_view text, bool at_start, bool parse_special,
                                      std::vector<int32_t>* ids) const {
  thread_local std::vector<PreToken> words;
  std::vector<TextSpan> spans;
  normalized_matcher_.Split(text, parse_special, &spans);
  for (const TextSpan& span : spans) {
    if (span.id >= 0) {
      ids->push_back(span.id);
      continue;
    }
    words.clear();
    parts_.pre_tokenizer.Split(text.substr(span.begin, span.end - span.begin),
                               at_start && span.begin == 0, &words);
    for (const PreToken& w : words) parts_.model->EncodeWord(w.text, ids);
  }
}

void ModelTokenizer::EncodeText(std::string_view text, bool parse_special,
                                std::vector<int32_t>* ids) const {
  std::vector<TextSpan> spans;
  raw_matcher_.Split(text, parse_special, &spans);
  for (const TextSpan& span : spans) {
    if (span.id >= 0) {
      ids->push_back(span.id);
      continue;
    }
    const std::string_view piece = text.substr(span.begin, span.end - span.begin);
    if (parts_.normalizer.empty()) {
      EncodeNormalized(piece, span.begin == 0, parse_special, ids);
    } else {
      // Normalizers only fail on invalid UTF-8, which Encode has already repaired.
      auto normalized = parts_.normalizer.Apply(piece);
      TM_CHECK(normalized.ok(), normalized.status().message());
      EncodeNormalized(*normalized, span.begin == 0, parse_special, ids);
    }
  }
}

absl::StatusOr<std::vector<int32_t>> ModelTokenizer::Encode(std::string_view text,
                                                            const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  const bool add_special = options.add_special.value_or(true);
  if (add_special) ids = parts_.prefix_ids;
  ids.reserve(ids.size() + text.size() / 3 + 8);
  if (IsValidUtf8(text)) {
    EncodeText(text, options.parse_special, &ids);
  } else {
    // Documented: invalid UTF-8 is replaced by U+FFFD first, as a Python str would be.
    std::string repaired;
    AppendUtf8Lossy(text, &repaired);
    EncodeText(repaired, options.parse_special, &ids);
  }
  if (add_special) ids.insert(ids.end(), parts_.suffix_ids.begin(), parts_.suffix_ids.end());
  return ids;
}

absl::StatusOr<std::string> ModelTokenizer::Decode(std::span<const int32_t> ids,
                                                   bool skip_special) const {
  IncrementalDetokenizer detokenizer(*this, skip_special);
  std::string out;
  out.reserve(ids.size() * 4);
  for (int32_t id : ids) TM_RETURN_IF_ERROR(detokenizer.Add(id, &out));
  detokenizer.Finish(&out);
  return out;
}

bool ModelTokenizer::add_bos_by_default() const {
  return parts_.bos_id >= 0 && !parts_.prefix_ids.empty() &&
         parts_.prefix_ids.front() == parts_.bos_id;
}

bool ModelTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && parts_.special[id];
}

std::string_view ModelTokenizer::TokenString(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return parts_.vocab->stored[id];
}

int32_t ModelTokenizer::TokenToId(std::string_view token) const {
  auto it = stored_to_id_.find(token);
  return it == stored_to_id_.end() ? -1 : it->second;
}

std::string_view ModelTokenizer::TokenBytes(int32_t id, bool is_first) const {
  TM_DCHECK(id >= 0 && id < vocab_size());
  if (is_first && !parts_.first_piece_bytes.empty()) return parts_.first_piece_bytes[id];
  return parts_.piece_bytes[id];
}

bool ModelTokenizer::IsByteToken(int32_t id) const {
  return id >= 0 && id < vocab_size() && parts_.is_byte_token[id];
}

}  // namespace tokenmill::tokenizer_internal
