#include "tokenmill/model/inspect.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tokenmill {
namespace {

std::vector<const TensorView*> WeightTensors(const ModelWeights& w) {
  std::vector<const TensorView*> out = {&w.tok_embd, &w.output_norm, &w.lm_head};
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                                &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      out.push_back(t);
    }
  }
  return out;
}

bool IsMapped(const LoadedModel& m, const TensorView& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (const auto& f : m.files) {
    if (p >= f->data() && p < f->data() + f->size()) return true;
  }
  return false;
}

uint64_t KvBytesPerToken(const ModelConfig& c, DType dtype) {
  KvCacheSpec spec;
  spec.num_layers = c.num_layers;
  spec.num_kv_heads = c.num_kv_heads;
  spec.head_dim = c.head_dim;
  spec.dtype = dtype;
  return spec.BytesPerToken();
}

std::string RopeDescription(const RopeParams& r) {
  std::string s =
      absl::StrCat("RoPE ", r.is_neox ? "half-split (neox)" : "interleaved", ", theta ", r.theta);
  switch (r.scaling) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      absl::StrAppend(&s, ", linear scaling x", r.factor);
      break;
    case RopeScalingType::kLlama3:
      absl::StrAppend(&s, ", llama3 scaling x", r.factor, " (low ", r.low_freq_factor, ", high ",
                      r.high_freq_factor, ", original context ", r.original_max_position_embeddings,
                      ")");
      break;
  }
  return s;
}

}  // namespace

std::string FormatBytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return absl::StrCat(n, " B");
  double v = static_cast<double>(n) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.2f %s", v, kUnits[unit]);
}

std::string FormatCount(int64_t n) {
  if (n < 1000) return absl::StrCat(n);
  if (n < 1'000'000) return absl::StrFormat("%.1fK", n / 1e3);
  if (n < 1'000'000'000) return absl::StrFormat("%.1fM", n / 1e6);
  return absl::StrFormat("%.2fB", n / 1e9);
}

ModelSummary SummarizeModel(const LoadedModel& m) {
  ModelSummary s;
  s.config = m.config;
  s.path = m.path;
  s.format = m.format;
  s.is_random_weights = m.config.is_random_weights;
  s.num_parameters = m.config.NumParameters();
  std::set<const void*> seen;  // a tied lm_head shares tok_embd's bytes
  for (const TensorView* t : WeightTensors(m.weights)) {
    if (t->data == nullptr || !seen.insert(t->data).second) continue;
    auto it = std::find_if(s.dtypes.begin(), s.dtypes.end(),
                           [&](const DTypeUsage& u) { return u.dtype == t->dtype; });
    if (it == s.dtypes.end()) it = s.dtypes.insert(s.dtypes.end(), DTypeUsage{t->dtype});
    ++it->num_tensors;
    it->num_elements += t->NumElements();
    it->num_bytes += t->NumBytes();
    ++s.num_tensors;
    s.weight_bytes += t->NumBytes();
    (IsMapped(m, *t) ? s.mapped_bytes : s.owned_bytes) += t->NumBytes();
  }
  std::sort(s.dtypes.begin(), s.dtypes.end(),
            [](const DTypeUsage& a, const DTypeUsage& b) { return a.num_bytes > b.num_bytes; });
  for (const auto& f : m.files) s.file_bytes += f->size();
  s.kv_bytes_per_token_f32 = KvBytesPerToken(m.config, DType::kF32);
  s.kv_bytes_per_token_f16 = KvBytesPerToken(m.config, DType::kF16);
  s.context_tokens = m.config.max_position_embeddings;
  const uint64_t ctx = static_cast<uint64_t>(std::max(0, s.context_tokens));
  s.full_context_bytes_f16 = s.weight_bytes + ctx * s.kv_bytes_per_token_f16;
  s.full_context_bytes_f32 = s.weight_bytes + ctx * s.kv_bytes_per_token_f32;
  return s;
}

std::string FormatModelSummary(const ModelSummary& s) {
  const ModelConfig& c = s.config;
  std::string out;
  auto line = [&out](const std::string& key, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-13s %s\n", key, value));
  };
  if (s.is_random_weights) {
    absl::StrAppend(&out,
                    "RANDOM WEIGHTS: a demo model built in memory; its outputs are "
                    "meaningless.\n");
  }
  line("model", absl::StrCat(c.name, " (", s.format, ", ", c.architecture, ")"));
  line("path", s.path);
  line("parameters", absl::StrCat(FormatCount(s.num_parameters), " (", s.num_parameters, ")"));
  line("weights",
       absl::StrCat(FormatBytes(s.weight_bytes), " in ", s.num_tensors, " tensors",
                    s.mapped_bytes == 0
                        ? " (in memory)"
                        : absl::StrCat(" (", FormatBytes(s.mapped_bytes), " mapped in place, ",
                                       FormatBytes(s.owned_bytes), " converted)")));
  for (const DTypeUsage& u : s.dtypes) {
    line(absl::StrCat("  ", std::string(DTypeName(u.dtype))),
         absl::StrCat(u.num_tensors, " tensors, ", FormatCount(u.num_elements), " values, ",
                      FormatBytes(u.num_bytes)));
  }
  if (s.file_bytes > 0) line("files", FormatBytes(s.file_bytes));
  line("layers", absl::StrCat(c.num_layers, " x (hidden ", c.hidden_size, ", ffn ",
                              c.intermediate_size, ", SwiGLU)"));
  line("attention",
       absl::StrCat(
           c.num_heads, " heads, ", c.num_kv_heads, " KV heads (GQA ",
           c.num_heads / std::max(1, c.num_kv_heads), ":1), head_dim ", c.head_dim,
           c.attention_bias ? ", q/k/v bias" : "",
           c.sliding_window > 0 ? absl::StrCat(", sliding window ", c.sliding_window) : ""));
  line("position", RopeDescription(c.rope));
  line("norm", absl::StrFormat("RMSNorm, eps %g", c.rms_norm_eps));
  line("vocab",
       absl::StrCat(c.vocab_size, ", embeddings ",
                    c.tie_word_embeddings ? "tied to lm_head" : "separate from lm_head", "; bos ",
                    c.bos_token_id, ", eos ",
                    c.eos_token_ids.empty() ? "none" : absl::StrJoin(c.eos_token_ids, " ")));
  line("KV cache", absl::StrCat(FormatBytes(s.kv_bytes_per_token_f16), "/token f16/bf16, ",
                                FormatBytes(s.kv_bytes_per_token_f32), "/token f32"));
  line("context", absl::StrCat(s.context_tokens, " tokens"));
  line("memory", absl::StrCat("full context, one sequence: ", FormatBytes(s.full_context_bytes_f16),
                              " with an f16 KV cache (", FormatBytes(s.full_context_bytes_f32),
                              " f32), plus activations"));
  return out;
}

}  // namespace tokenmill
