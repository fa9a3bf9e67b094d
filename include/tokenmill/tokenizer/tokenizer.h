// Text <-> token ids for a model. Implementations: SentencePiece-style BPE with byte
// fallback (Llama 2, Mistral, Phi-3, stories260K), byte-level BPE (GPT-2, Llama 3, Qwen2,
// SmolLM2). Immutable after construction; every method is safe to call from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenmill {

struct EncodeOptions {
  // Add BOS/EOS (or the post-processor template) as the model's config says.
  // std::nullopt: the tokenizer's own default (add_bos_token etc.).
  std::optional<bool> add_special;
  // Recognise special/added tokens written literally in the text ("<|eot_id|>").
  bool parse_special = true;
};

enum class TokenType : uint8_t { kNormal, kUnknown, kControl, kUserDefined, kUnused, kByte };

// How Decode turns tokens into text; IncrementalDetokenizer applies the same rules, so a
// stream of its output equals Decode of the whole sequence.
//   text = Utf8Lossy(StripLeading(concat(TokenBytes(id, id is the first decoded token))))
// where a run of consecutive byte tokens (IsByteToken) joins as bytes when it is valid
// UTF-8 and otherwise becomes one U+FFFD per token (HF's ByteFallback decoder), and
// Utf8Lossy replaces each maximal invalid subsequence by U+FFFD (Rust's
// String::from_utf8_lossy, as HF's ByteLevel decoder). Skipped special tokens are
// removed before any of this, as HF does.
struct DecodeRules {
  // Up to this many leading ' ' of the text are removed (HF's Strip decoder after Fuse,
  // SentencePiece's dummy prefix). Stripping stops at the first other character.
  int num_strip_leading_spaces = 0;
  // Byte tokens follow HF ByteFallback's run rule above (otherwise they are plain bytes).
  bool byte_fallback_runs = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Errors only for input that cannot be tokenized at all (documented per implementation);
  // invalid UTF-8 is replaced by U+FFFD as HF tokenizers do.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      const EncodeOptions& options) const = 0;
  // Concatenated text of `ids`. Special tokens are rendered unless skip_special.
  // Out-of-range ids are an InvalidArgument error naming the id.
  virtual absl::StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                             bool skip_special = false) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the model has none
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual bool add_bos_by_default() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  // The vocabulary's string for `id` as stored (e.g. "▁the", "Ġthe", "<0x0A>").
  virtual std::string_view TokenString(int32_t id) const = 0;
  // Chat template (Jinja source) from the tokenizer config, empty when none.
  virtual const std::string& chat_template() const = 0;

  // Id of the token whose stored string (TokenString) is `token`, -1 when none.
  virtual int32_t TokenToId(std::string_view token) const = 0;
  virtual int32_t pad_id() const = 0;  // -1 when the model has none
  // --- Decoding primitives (see DecodeRules); ids must be in range. ---
  // The bytes `id` contributes to the text; `is_first`: it is the first decoded token
  // (some decoders drop its leading replacement character).
  virtual std::string_view TokenBytes(int32_t id, bool is_first) const = 0;
  virtual bool IsByteToken(int32_t id) const = 0;
  virtual const DecodeRules& decode_rules() const = 0;
};

// A tokenizer for a model directory, a tokenizer.json, a tokenizer folder (tokenizer.json;
// vocab.json + merges.txt; tiktoken tokenizer.model) or a GGUF file (vocab-only GGUFs
// included). Errors name the file and field. See docs/tokenizers.md.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

// The demo model's tokenizer: ids 0..255 are the raw bytes, 256 = BOS "<s>",
// 257 = EOS "</s>"; BOS is added by default; vocab_size 258.
std::unique_ptr<Tokenizer> MakeByteTokenizer();

}  // namespace tokenmill
