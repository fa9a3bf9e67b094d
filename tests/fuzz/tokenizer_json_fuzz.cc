// tokenizer.json loading on arbitrary text (the loader behind LoadTokenizer for HF files):
// malformed JSON, wrong types, bad ids, unknown normalizers/pre-tokenizers/decoders must
// end in a Status. A tokenizer that loads is then exercised: its whole vocabulary, the
// encoding of a few awkward strings, and streaming decode == Decode of the result.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/tokenizer_checks.h"
#include "nlohmann/json.hpp"
#include "tokenizer/loaders.h"

namespace {

constexpr const char* kTexts[] = {
    "Hello world",
    "  two  spaces\tand\ttabs\n\nnewlines ",
    "na\xc3\xafve \xef\xbc\xa1\xef\xbc\xa2 \xef\xac\x81ne 1234567 3.14",  // naive, fullwidth, fi
    "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
    "<s>[INST] <|endoftext|> <|im_start|>user</s>",
    "bad utf-8: \xff\xfe\xc3 \xed\xa0\x80 end",
    "",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr,
                                                 /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto tok = tokenmill::tokenizer_internal::LoadHfTokenizer(j, "tokenizer.json", /*dir=*/"");
  if (!tok.ok()) return 0;
  tokenmill::fuzz::CheckVocabulary(**tok);
  for (const char* text : kTexts) {
    for (bool special : {false, true}) {
      tokenmill::EncodeOptions options;
      options.add_special = special;
      options.parse_special = special;
      const std::vector<int32_t> ids = tokenmill::fuzz::CheckEncode(**tok, text, options);
      tokenmill::fuzz::CheckStreamingDecode(**tok, ids);
    }
  }
  std::vector<int32_t> all_ids;
  for (int32_t id = -1; id <= (*tok)->vocab_size() && all_ids.size() < 4096; ++id) {
    all_ids.push_back(id);
  }
  tokenmill::fuzz::CheckStreamingDecode(**tok, all_ids);
  return 0;
}
