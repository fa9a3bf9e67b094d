// Real tokenizers on arbitrary input: GPT-2 and Llama 2 tokenizer.json, Llama 3's tiktoken
// model, the llama.cpp SentencePiece GGUF vocabulary (from the test data; see
// docs/testing.md) and the demo byte tokenizer. The input picks a tokenizer and options,
// then gives a text to encode and ids to decode (layout: see SplitInput):
// - encoded ids are in range, and valid UTF-8 text survives Decode(Encode(text)) for
//   these lossless tokenizers (special tokens not parsed, none added; SentencePiece ones
//   turn a literal U+2581 into a space);
// - streaming decode (IncrementalDetokenizer, after an optional Prime) equals Decode.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/tokenizer_checks.h"
#include "tokenizer/unicode.h"
#include "tokenmill/tokenizer/detokenizer.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace {

using tokenmill::Tokenizer;

// Relative to the test data directory ($TOKENMILL_TESTDATA, else the one baked in at
// build time). Missing files are skipped with a note on stderr.
struct TokenizerFile {
  const char* path;
  // SentencePiece style: spaces become U+2581 before the model sees them and U+2581
  // decodes as a space, so a literal U+2581 in the text comes back as a space.
  bool sentencepiece;
};
constexpr TokenizerFile kTokenizerFiles[] = {
    {"tokenizers/gpt2/tokenizer.json", false},
    {"tokenizers/llama-2/tokenizer.json", true},
    {"tokenizers/llama-3/tokenizer.model", false},
    {"vocab/ggml-vocab-llama-spm.gguf", true},
};

struct LoadedTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  bool sentencepiece = false;
};

std::vector<LoadedTokenizer>* LoadAll() {
  auto* all = new std::vector<LoadedTokenizer>();
  all->push_back({tokenmill::MakeByteTokenizer(), false});
  const char* env = std::getenv("TOKENMILL_TESTDATA");
  const std::string dir = env != nullptr ? env : TOKENMILL_FUZZ_TESTDATA_DIR;
  for (const TokenizerFile& file : kTokenizerFiles) {
    const std::string path = absl::StrCat(dir, "/", file.path);
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok = tokenmill::LoadTokenizer(path);
    if (!tok.ok()) {
      std::fprintf(stderr, "encode_decode_fuzz: skipping %s: %s\n", path.c_str(),
                   std::string(tok.status().message()).c_str());
      continue;
    }
    all->push_back({*std::move(tok), file.sentencepiece});
  }
  return all;
}

// Input layout: [tokenizer][flags][text length, 2 bytes LE][text][ids, 3 bytes LE each].
// A short input leaves the later parts empty. Each id maps into [-1, vocab_size] so that
// both out-of-range neighbours occur.
struct Input {
  size_t tokenizer = 0;
  uint8_t flags = 0;
  std::string text;
  std::vector<int32_t> ids;
};

Input SplitInput(const uint8_t* data, size_t size,
                 const std::vector<LoadedTokenizer>& tokenizers) {
  Input in;
  size_t pos = 0;
  auto byte = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };
  in.tokenizer = byte() % tokenizers.size();
  in.flags = byte();
  size_t text_len = byte();
  text_len |= static_cast<size_t>(byte()) << 8;
  text_len = std::min(text_len, size - std::min(pos, size));
  in.text.assign(reinterpret_cast<const char*>(data) + pos, text_len);
  pos += text_len;
  const int64_t n = tokenizers[in.tokenizer].tokenizer->vocab_size();
  while (pos + 3 <= size && in.ids.size() < 1024) {
    const uint32_t v = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16);
    in.ids.push_back(static_cast<int32_t>(v % (n + 2)) - 1);
    pos += 3;
  }
  return in;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<LoadedTokenizer>* tokenizers = LoadAll();
  const Input in = SplitInput(data, size, *tokenizers);
  const LoadedTokenizer& chosen = (*tokenizers)[in.tokenizer];
  const Tokenizer& tok = *chosen.tokenizer;
  const uint8_t flags = in.flags;
  const std::string& text = in.text;
  const std::vector<int32_t>& ids = in.ids;
  const int32_t n = tok.vocab_size();

  // Round trip without special handling: lossless for valid UTF-8.
  tokenmill::EncodeOptions plain;
  plain.add_special = false;
  plain.parse_special = false;
  const std::vector<int32_t> plain_ids = tokenmill::fuzz::CheckEncode(tok, text, plain);
  const std::string round_trip = tokenmill::fuzz::CheckStreamingDecode(tok, plain_ids);
  if (tokenmill::tokenizer_internal::IsValidUtf8(text)) {
    const std::string expected =
        chosen.sentencepiece ? absl::StrReplaceAll(text, {{"\xe2\x96\x81", " "}}) : text;
    TM_FUZZ_ASSERT(round_trip == expected, absl::StrCat("'", text, "' -> '", round_trip, "'"));
  }

  tokenmill::EncodeOptions options;
  if (flags & 1) options.add_special = (flags & 2) != 0;
  options.parse_special = (flags & 4) != 0;
  tokenmill::fuzz::CheckStreamingDecode(tok, tokenmill::fuzz::CheckEncode(tok, text, options));
  tokenmill::fuzz::CheckStreamingDecode(tok, ids);

  // Prime with the text's ids, then stream the arbitrary ones: only must not fail on
  // in-range ids (what Prime changes is the leading-space rule, checked by unit tests).
  tokenmill::IncrementalDetokenizer detok(tok, (flags & 8) != 0);
  std::vector<int32_t> valid;
  for (int32_t id : ids) {
    if (id >= 0 && id < n) valid.push_back(id);
  }
  TM_FUZZ_ASSERT(detok.Prime(plain_ids).ok(), "Prime on encoded ids");
  std::string out;
  for (int32_t id : valid) TM_FUZZ_ASSERT(detok.Add(id, &out).ok(), absl::StrCat("Add ", id));
  detok.Finish(&out);
  return 0;
}
