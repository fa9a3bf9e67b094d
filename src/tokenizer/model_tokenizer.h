// The one concrete Tokenizer: added-token splitting, normalizer, pre-tokenizer, a word
// model (ranked BPE or llama.cpp's SentencePiece BPE), a BOS/EOS template and a
// per-token decode table. Every loader (tokenizer.json, vocab.json + merges.txt,
// tiktoken, GGUF, the demo byte tokenizer) fills ModelTokenizer::Parts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/vocab.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::tokenizer_internal {

class ModelTokenizer final : public Tokenizer {
 public:
  struct Parts {
    std::unique_ptr<Vocab> vocab;  // stable address: the model points into it
    std::unique_ptr<WordModel> model;
    Normalizer normalizer;
    PreTokenizer pre_tokenizer;
    std::vector<AddedToken> added_tokens;
    std::vector<int32_t> prefix_ids, suffix_ids;  // added around the text by add_special
    int32_t bos_id = -1, pad_id = -1;
    std::vector<int32_t> eos_ids;
    std::vector<bool> special;  // per id: skipped by Decode(skip_special)
    // Decode table: bytes per token, and for the first decoded token when it differs
    // (Metaspace decoder); byte tokens are single bytes under ByteFallback.
    std::vector<std::string> piece_bytes, first_piece_bytes;
    std::vector<bool> is_byte_token;
    DecodeRules decode_rules;
    std::string chat_template;
  };

  // Requires: parts.vocab and parts.model set; every per-id vector sized vocab->size().
  explicit ModelTokenizer(Parts parts);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const override;
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                     bool skip_special) const override;
  int32_t vocab_size() const override { return parts_.vocab->size(); }
  int32_t bos_id() const override { return parts_.bos_id; }
  std::vector<int32_t> eos_ids() const override { return parts_.eos_ids; }
  bool add_bos_by_default() const override;
  bool IsSpecial(int32_t id) const override;
  std::string_view TokenString(int32_t id) const override;
  const std::string& chat_template() const override { return parts_.chat_template; }
  int32_t TokenToId(std::string_view token) const override;
  int32_t pad_id() const override { return parts_.pad_id; }
  std::string_view TokenBytes(int32_t id, bool is_first) const override;
  bool IsByteToken(int32_t id) const override;
  const DecodeRules& decode_rules() const override { return parts_.decode_rules; }

 private:
  void EncodeText(std::string_view text, bool parse_special, std::vector<int32_t>* ids) const;
  void EncodeNormalized(std::string_view text, bool at_start, bool parse_special,
                        std::vector<int32_t>* ids) const;

  Parts parts_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized == false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized == true
  absl::flat_hash_map<std::string_view, int32_t> stored_to_id_;
};

// Fills the decode table for a vocabulary whose stored strings are decoded by `decoder`
// (a tokenizer.json "decoder" value; null decodes stored strings as they are).
absl::Status BuildDecodeTable(const nlohmann::json& decoder, ModelTokenizer::Parts* parts);

}  // namespace tokenmill::tokenizer_internal
