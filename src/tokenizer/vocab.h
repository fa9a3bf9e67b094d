// The vocabulary every model shares: token strings as stored in the file, the form the
// model matches on (raw bytes for byte-level vocabularies), token types and a lookup.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::tokenizer_internal {

struct Vocab {
  std::vector<std::string> stored;  // TokenString(): "Ġthe", "▁the", "<0x0A>"
  std::vector<std::string> model;   // what the model matches: " the" for byte-level
  std::vector<TokenType> types;
  // model form -> id; on duplicates the last id wins (llama.cpp and HF both overwrite).
  absl::flat_hash_map<std::string_view, int32_t> model_to_id;

  int32_t size() const { return static_cast<int32_t>(stored.size()); }
  // Fills `model_to_id` from `model` (call after the vectors are final).
  void BuildIndex();
  int32_t Find(std::string_view model_form) const {
    auto it = model_to_id.find(model_form);
    return it == model_to_id.end() ? -1 : it->second;
  }
};

}  // namespace tokenmill::tokenizer_internal
