#include "fuzz/tokenizer_checks.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "tokenmill/tokenizer/detokenizer.h"

namespace tokenmill::fuzz {
namespace {

bool InRange(const Tokenizer& tok, int32_t id) { return id >= 0 && id < tok.vocab_size(); }

void CheckStream(const Tokenizer& tok, std::span<const int32_t> ids, bool skip_special,
                 std::vector<int32_t>* accepted, std::string* decoded) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string streamed;
  accepted->clear();
  for (int32_t id : ids) {
    const size_t before = streamed.size();
    const absl::Status s = detok.Add(id, &streamed);
    TM_FUZZ_ASSERT(s.ok() == InRange(tok, id), absl::StrCat("Add(", id, "): ", s.ToString()));
    if (s.ok()) {
      accepted->push_back(id);
    } else {
      TM_FUZZ_ASSERT(streamed.size() == before, "a rejected id emitted text");
    }
  }
  detok.Finish(&streamed);
  TM_FUZZ_ASSERT(detok.num_pending_bytes() == 0, "bytes pending after Finish");
  absl::StatusOr<std::string> whole = tok.Decode(*accepted, skip_special);
  TM_FUZZ_ASSERT(whole.ok(), whole.status().ToString());
  TM_FUZZ_ASSERT(streamed == *whole,
                 absl::StrCat("skip_special=", skip_special, "\nstream: '", streamed,
                              "'\ndecode: '", *whole, "'"));
  *decoded = *std::move(whole);
}

}  // namespace

std::vector<int32_t> CheckEncode(const Tokenizer& tok, std::string_view text,
                                 const EncodeOptions& options) {
  absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text, options);
  if (!ids.ok()) return {};
  for (int32_t id : *ids) TM_FUZZ_ASSERT(InRange(tok, id), absl::StrCat("encoded id ", id));
  return *std::move(ids);
}

std::string CheckStreamingDecode(const Tokenizer& tok, std::span<const int32_t> ids) {
  bool any_out_of_range = false;
  for (int32_t id : ids) any_out_of_range |= !InRange(tok, id);
  const absl::StatusOr<std::string> all = tok.Decode(ids);
  TM_FUZZ_ASSERT(all.ok() != any_out_of_range, all.status().ToString());

  std::vector<int32_t> accepted;
  std::string decoded, decoded_skipping;
  CheckStream(tok, ids, /*skip_special=*/true, &accepted, &decoded_skipping);
  CheckStream(tok, ids, /*skip_special=*/false, &accepted, &decoded);
  return decoded;
}

void CheckVocabulary(const Tokenizer& tok) {
  const int32_t n = tok.vocab_size();
  TM_FUZZ_ASSERT(n >= 0, absl::StrCat("vocab_size ", n));
  TM_FUZZ_ASSERT(tok.bos_id() == -1 || InRange(tok, tok.bos_id()), "bos_id");
  TM_FUZZ_ASSERT(tok.pad_id() == -1 || InRange(tok, tok.pad_id()), "pad_id");
  for (int32_t id : tok.eos_ids()) TM_FUZZ_ASSERT(InRange(tok, id), "eos id");
  size_t total = 0;
  for (int32_t id = 0; id < n; ++id) {
    const std::string_view stored = tok.TokenString(id);
    total += stored.size() + tok.TokenBytes(id, /*is_first=*/true).size() +
             tok.TokenBytes(id, /*is_first=*/false).size() + tok.IsSpecial(id) +
             tok.IsByteToken(id);
    const int32_t back = tok.TokenToId(stored);
    // Several ids may share a stored string (an added token repeating a vocab entry).
    TM_FUZZ_ASSERT(back == -1 || InRange(tok, back), absl::StrCat("TokenToId -> ", back));
  }
  const int32_t odd = tok.TokenToId("\xff\xfe");
  TM_FUZZ_ASSERT(odd == -1 || InRange(tok, odd), absl::StrCat("TokenToId -> ", odd));
  fuzz::KeepAlive(total);
}

}  // namespace tokenmill::fuzz
