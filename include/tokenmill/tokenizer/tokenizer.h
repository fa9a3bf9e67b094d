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
};

}  // namespace tokenmill
