#include "tokenmill/loadgen/workload.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "loadgen/rng.h"
#include "loadgen/utf8.h"

namespace tokenmill::loadgen {
namespace {

// Random streams of one generator; a session's stream is kSessionBase + its index.
constexpr uint64_t kSystemStream = 1;
constexpr uint64_t kSessionBase = 1000;

// Printable text: valid UTF-8 without control characters (tab, newline and space allowed).
bool IsPrintable(std::string_view bytes) {
  if (bytes.empty() || !IsValidUtf8(bytes)) return false;
  for (unsigned char c : bytes) {
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

void AppendRandom(const TokenSource& src, int n, Rng& rng, std::vector<int32_t>* out) {
  const int64_t last = static_cast<int64_t>(src.content_ids.size()) - 1;
  for (int i = 0; i < n; ++i) out->push_back(src.content_ids[rng.UniformInt(0, last)]);
}

// A prompt segment of exactly `n` tokens; the first segment of a prompt starts with BOS.
std::shared_ptr<const std::vector<int32_t>> MakeSegment(const TokenSource& src, int n, bool first,
                                                        Rng& rng) {
  auto ids = std::make_shared<std::vector<int32_t>>();
  ids->reserve(n);
  if (first && src.bos_id >= 0 && n > 0) {
    ids->push_back(src.bos_id);
    --n;
  }
  AppendRandom(src, n, rng, ids.get());
  return ids;
}

}  // namespace

std::vector<int32_t> Session::PromptIds(int t) const {
  std::vector<int32_t> ids;
  ids.reserve(turns[t].prompt_tokens);
  for (int s = 0; s < turns[t].num_prompt_segments; ++s) {
    ids.insert(ids.end(), segments[s]->begin(), segments[s]->end());
  }
  return ids;
}

absl::StatusOr<TokenSource> MakeTokenSource(const Tokenizer& tokenizer) {
  TokenSource src;
  if (tokenizer.add_bos_by_default()) src.bos_id = tokenizer.bos_id();
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.IsSpecial(id) || tokenizer.IsByteToken(id) || id == tokenizer.bos_id() ||
        std::find(eos.begin(), eos.end(), id) != eos.end()) {
      continue;
    }
    if (IsPrintable(tokenizer.TokenBytes(id, /*is_first=*/false))) src.content_ids.push_back(id);
  }
  if (src.content_ids.empty()) {
    return absl::InvalidArgumentError(
        "tokenizer has no printable normal token to build prompts from");
  }
  return src;
}

absl::StatusOr<WorkloadGenerator> WorkloadGenerator::Create(
    const WorkloadSpec& spec, std::shared_ptr<const TokenSource> tokens, uint64_t seed,
    int max_model_len) {
  if (max_model_len < 2) return absl::InvalidArgumentError("max_model_len must be >= 2");
  WorkloadGenerator g;
  g.spec_ = spec;
  g.tokens_ = std::move(tokens);
  g.seed_ = seed;
  g.max_model_len_ = max_model_len;
  auto too_long = [&](int need) {
    return absl::InvalidArgumentError(
        absl::StrCat("--workload '", spec.text, "': needs ", need,
                     " tokens of context (prompt + output) but the model holds ", max_model_len,
                     " (--max-model-len)"));
  };
  switch (spec.kind) {
    case WorkloadKind::kFixed:
    case WorkloadKind::kRandom:
      if (spec.input_min + spec.output_min > max_model_len) {
        return too_long(spec.input_min + spec.output_min);
      }
      break;
    case WorkloadKind::kChat:
      if (spec.chat.input_min + spec.chat.output_min > max_model_len) {
        return too_long(spec.chat.input_min + spec.chat.output_min);
      }
      break;
    case WorkloadKind::kAgentic: {
      if (spec.agentic.system_tokens + 2 > max_model_len) {
        return too_long(spec.agentic.system_tokens + 2);
      }
      Rng rng(seed, kSystemStream);
      g.system_prompt_ = MakeSegment(*g.tokens_, spec.agentic.system_tokens, true, rng);
      break;
    }
  }
  return g;
}

Session WorkloadGenerator::MakeSession(int64_t index) const {
  return spec_.kind == WorkloadKind::kAgentic ? MakeAgentic(index) : MakeSingleTurn(index);
}

Session WorkloadGenerator::MakeSingleTurn(int64_t index) const {
  Rng rng(seed_, kSessionBase + static_cast<uint64_t>(index));
  int in = 0, out = 0;
  if (spec_.kind == WorkloadKind::kChat) {
    const ChatParams& c = spec_.chat;
    in = rng.LogNormal(c.input_median, c.input_sigma, c.input_min, c.input_max);
    out = rng.LogNormal(c.output_median, c.output_sigma, c.output_min, c.output_max);
  } else {
    in = static_cast<int>(rng.UniformInt(spec_.input_min, spec_.input_max));
    out = static_cast<int>(rng.UniformInt(spec_.output_min, spec_.output_max));
  }
  Session s;
  s.index = index;
  // The long tail may not fit the context: keep the prompt, shorten the answer first.
  if (in + out > max_model_len_) {
    s.truncated = true;
    in = std::min(in, max_model_len_ - 1);
    out = max_model_len_ - in;
  }
  s.segments.push_back(MakeSegment(*tokens_, in, true, rng));
  s.turns.push_back({.num_prompt_segments = 1, .prompt_tokens = in, .max_tokens = out});
  return s;
}

Session WorkloadGenerator::MakeAgentic(int64_t index) const {
  const AgenticParams& a = spec_.agentic;
  Rng rng(seed_, kSessionBase + static_cast<uint64_t>(index));
  Session s;
  s.index = index;
  s.segments.push_back(system_prompt_);
  const int num_turns = static_cast<int>(rng.UniformInt(a.min_turns, a.max_turns));
  int context = a.system_tokens;  // prompt so far, before this turn's user message
  for (int t = 0; t < num_turns; ++t) {
    int user = rng.LogNormal(a.user_median, a.user_sigma, 1, a.user_max);
    int out = rng.LogNormal(a.output_median, a.output_sigma, 1, a.output_max);
    const double think = t == 0 ? 0.0 : rng.Exponential(a.think_mean_s);
    if (context + user + out > max_model_len_) {
      if (t > 0) {
        s.truncated = true;
        break;
      }
      // The first turn always runs, shortened to fit (Create checked system + 2 fits).
      s.truncated = true;
      user = std::max(1, std::min(user, max_model_len_ - context - 1));
      out = max_model_len_ - context - user;
    }
    if (t > 0) {
      // The previous turn's reply joins the history before this user message.
      const int prev_out = s.turns.back().max_tokens;
      s.segments.push_back(MakeSegment(*tokens_, prev_out, false, rng));
    }
    s.segments.push_back(MakeSegment(*tokens_, user, false, rng));
    context += user;
    s.turns.push_back({.num_prompt_segments = static_cast<int>(s.segments.size()),
                       .prompt_tokens = context,
                       .max_tokens = out,
                       .think_before_s = think});
    context += out;
  }
  return s;
}

}  // namespace tokenmill::loadgen
