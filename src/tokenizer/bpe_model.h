// BPE over token ids with ranked merges (HF tokenizers' BPE model, tiktoken, llama.cpp's
// BPE), and llama.cpp's score-driven SentencePiece BPE. Immutable, thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "tokenizer/vocab.h"

namespace tokenmill::tokenizer_internal {

// Encodes one pre-tokenized word (in the vocabulary's model form) to ids.
class WordModel {
 public:
  virtual ~WordModel() = default;
  virtual void EncodeWord(std::string_view word, std::vector<int32_t>* out) const = 0;
};

struct BpeOptions {
  bool byte_level = false;     // initial symbols are single bytes, not characters
  bool byte_fallback = false;  // unknown characters become <0xNN> tokens
  bool ignore_merges = false;  // a word that is itself a token is not split
  bool fuse_unk = false;
  int32_t unk_id = -1;
  std::string continuing_subword_prefix{}, end_of_word_suffix{};
};

class BpeModel final : public WordModel {
 public:
  // `vocab` must outlive the model. `merges` are pairs of model-form strings in rank
  // order; a merge naming an unknown token is an error.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromMerges(
      const Vocab* vocab, const std::vector<std::pair<std::string, std::string>>& merges,
      BpeOptions options);
  // tiktoken: the rank of a pair is the rank (id) of their concatenation.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromRanks(const Vocab* vocab,
                                                             BpeOptions options);

  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const override;
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  BpeModel(const Vocab* vocab, BpeOptions options);
  void EncodeChunk(std::string_view word, std::vector<int32_t>* out) const;
  void InitialSymbols(std::string_view word, std::vector<int32_t>* ids) const;
  void MergeAll(std::vector<int32_t>* ids) const;

  const Vocab* vocab_;
  BpeOptions options_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  bool split_at_metaspace_ = false;  // see MetaspaceSplitIsExact in bpe_model.cc
  int32_t byte_ids_[256];            // single-byte tokens (byte-level), -1 when absent
  int32_t fallback_ids_[256];        // <0xNN> tokens, -1 when absent
};

// llama.cpp llm_tokenizer_spm: merges the adjacent pair whose concatenation is the
// highest-scoring token, ties to the left; leftover characters become byte tokens.
class SpmModel final : public WordModel {
 public:
  SpmModel(const Vocab* vocab, std::vector<float> scores);
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const override;

 private:
  void EncodeChunk(std::string_view text, std::vector<int32_t>* out) const;

  const Vocab* vocab_;
  std::vector<float> scores_;
  bool split_at_metaspace_ = false;
  int32_t fallback_ids_[256];
};

}  // namespace tokenmill::tokenizer_internal
