#include "tokenmill/model/gguf_config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

// An integer metadata value that must fit an int; `fallback` when absent.
absl::StatusOr<int> IntKey(const GgufFile& g, const std::string& key, std::optional<int> fallback) {
  if (!g.Has(key)) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(
        absl::StrCat(g.path(), ": GGUF metadata key '", key, "' is required"));
  }
  TM_ASSIGN_OR_RETURN(const int64_t v, g.GetInt(key));
  if (v < INT_MIN || v > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(g.path(), ": GGUF metadata key '", key, "' = ", v, " is out of range"));
  }
  return static_cast<int>(v);
}

// A token id, or -1 when absent or "none" (llama.cpp writes uint32 0xffffffff for none).
absl::StatusOr<int> TokenIdKey(const GgufFile& g, const std::string& key) {
  if (!g.Has(key)) return -1;
  TM_ASSIGN_OR_RETURN(const int64_t v, g.GetInt(key));
  return v < 0 || v > INT_MAX ? -1 : static_cast<int>(v);
}

absl::StatusOr<float> FloatKey(const GgufFile& g, const std::string& key, float fallback) {
  if (!g.Has(key)) return fallback;
  TM_ASSIGN_OR_RETURN(const double v, g.GetFloat(key));
  return static_cast<float>(v);
}

// The per-frequency divisors llama.cpp's converter writes for Llama-3 rope scaling
// (HF's _compute_llama3_parameters expressed as inv_freq / factor_i).
std::vector<double> Llama3RopeFactors(const RopeParams& p) {
  const double low_wavelen = p.original_max_position_embeddings / p.low_freq_factor;
  const double high_wavelen = p.original_max_position_embeddings / p.high_freq_factor;
  std::vector<double> factors;
  for (int i = 0; i < p.rotary_dim / 2; ++i) {
    const double inv_freq = std::pow(static_cast<double>(p.theta), -2.0 * i / p.rotary_dim);
    const double wavelen = 2 * std::numbers::pi / inv_freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0);
    } else if (wavelen > low_wavelen) {
      factors.push_back(p.factor);
    } else {
      const double smooth = (p.original_max_position_embeddings / wavelen - p.low_freq_factor) /
                            (p.high_freq_factor - p.low_freq_factor);
      factors.push_back(1.0 / ((1 - smooth) / p.factor + smooth));
    }
  }
  return factors;
}

// Llama 3.x GGUFs carry their rope scaling only as the tensor rope_freqs.weight. We run
// the llama3 formula instead, so the tensor must be what that formula produces for some
// parameters: the factor is its largest entry; the rest are Meta's published values.
absl::Status InferLlama3Scaling(const GgufFile& g, const std::string& arch, ModelConfig* c) {
  absl::StatusOr<TensorView> t = g.Tensor("rope_freqs.weight");
  if (!t.ok()) return t.status();
  const int n = c->rope.rotary_dim / 2;
  if (t->dtype != DType::kF32 || t->NumElements() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(g.path(), ": tensor 'rope_freqs.weight' must be ", "F32 [", n, "], got ",
                     std::string(DTypeName(t->dtype)), " ", t->shape.ToString()));
  }
  const float* stored = t->As<float>();
  const float factor = *std::max_element(stored, stored + n);
  if (std::all_of(stored, stored + n, [](float x) { return x == 1.0f; })) return absl::OkStatus();
  std::vector<int> originals = {8192};
  if (absl::StatusOr<int> o = IntKey(g, arch + ".rope.scaling.original_context_length", 0);
      o.ok() && *o > 0 && *o != 8192) {
    originals.insert(originals.begin(), *o);
  }
  for (int original : originals) {
    RopeParams p = c->rope;
    p.scaling = RopeScalingType::kLlama3;
    p.factor = factor;
    p.low_freq_factor = 1.0f;
    p.high_freq_factor = 4.0f;
    p.original_max_position_embeddings = original;
    const std::vector<double> expected = Llama3RopeFactors(p);
    bool match = true;
    for (int i = 0; i < n && match; ++i) {
      match = std::fabs(stored[i] - expected[i]) <= 1e-3 * expected[i];
    }
    if (match) {
      c->rope = p;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      g.path(), ": tensor 'rope_freqs.weight' holds per-frequency rope factors that match no ",
      "llama3 scaling (low_freq_factor 1, high_freq_factor 4); not supported"));
}

absl::Status ParseRope(const GgufFile& g, const std::string& arch, ModelConfig* c) {
  c->rope.head_dim = c->head_dim;
  TM_ASSIGN_OR_RETURN(c->rope.rotary_dim, IntKey(g, arch + ".rope.dimension_count", c->head_dim));
  if (c->rope.rotary_dim != c->head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": partial rotary embeddings (", arch,
                                                   ".rope.dimension_count = ", c->rope.rotary_dim,
                                                   ", head_dim ", c->head_dim,
                                                   ") are not supported"));
  }
  TM_ASSIGN_OR_RETURN(c->rope.theta, FloatKey(g, arch + ".rope.freq_base", 10000.0f));
  c->rope.is_neox = arch != "llama";  // llama files hold Q/K rows permuted for interleaved RoPE
  std::string type = "none";
  if (g.Has(arch + ".rope.scaling.type")) {
    TM_ASSIGN_OR_RETURN(type, g.GetString(arch + ".rope.scaling.type"));
  } else if (g.Has(arch + ".rope.scale_linear")) {  // older converters
    type = "linear";
  }
  if (type == "linear") {
    c->rope.scaling = RopeScalingType::kLinear;
    const std::string key = g.Has(arch + ".rope.scaling.factor") ? arch + ".rope.scaling.factor"
                                                                 : arch + ".rope.scale_linear";
    TM_ASSIGN_OR_RETURN(c->rope.factor, FloatKey(g, key, 0.0f));
  } else if (type != "none") {
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": ", arch, ".rope.scaling.type '",
                                                   type, "' is not supported (none, linear)"));
  }
  if (g.FindTensor("rope_freqs.weight") != nullptr) {
    if (c->rope.scaling != RopeScalingType::kNone) {
      return absl::InvalidArgumentError(
          absl::StrCat(g.path(), ": both ", type, " rope scaling and a rope_freqs.weight tensor"));
    }
    TM_RETURN_IF_ERROR(InferLlama3Scaling(g, arch, c));
  }
  return absl::OkStatus();
}

absl::Status ParseVocabAndTokens(const GgufFile& g, const std::string& arch, ModelConfig* c) {
  if (g.Has(arch + ".vocab_size")) {
    TM_ASSIGN_OR_RETURN(c->vocab_size, IntKey(g, arch + ".vocab_size", std::nullopt));
  } else if (g.Has("tokenizer.ggml.tokens")) {
    TM_ASSIGN_OR_RETURN(std::vector<std::string> tokens, g.GetStringArray("tokenizer.ggml.tokens"));
    c->vocab_size = static_cast<int>(std::min<size_t>(tokens.size(), INT_MAX));
  } else if (const GgufTensorInfo* e = g.FindTensor("token_embd.weight"); e && e->shape.rank == 2) {
    c->vocab_size = static_cast<int>(std::min<int64_t>(e->shape[0], INT_MAX));
  }
  TM_ASSIGN_OR_RETURN(c->bos_token_id, TokenIdKey(g, "tokenizer.ggml.bos_token_id"));
  // Generation ends on any end-of-generation token llama.cpp knows (eos, eot, eom).
  c->eos_token_ids.clear();
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    TM_ASSIGN_OR_RETURN(const int id, TokenIdKey(g, key));
    if (id >= 0 &&
        std::find(c->eos_token_ids.begin(), c->eos_token_ids.end(), id) == c->eos_token_ids.end()) {
      c->eos_token_ids.push_back(id);
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& SupportedGgufArchitectures() {
  static const std::vector<std::string> kNames = {"llama", "qwen2"};
  return kNames;
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& g) {
  if (!g.Has("general.architecture")) {
    return absl::InvalidArgumentError(
        absl::StrCat(g.path(), ": GGUF metadata has no general.architecture"));
  }
  TM_ASSIGN_OR_RETURN(const std::string arch, g.GetString("general.architecture"));
  const auto& supported = SupportedGgufArchitectures();
  if (std::find(supported.begin(), supported.end(), arch) == supported.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(g.path(), ": GGUF architecture '", arch,
                     "' is not supported (supported: ", absl::StrJoin(supported, ", "), ")"));
  }
  ModelConfig c;
  c.architecture = arch;
  const std::string a = arch + ".";
  TM_ASSIGN_OR_RETURN(c.hidden_size, IntKey(g, a + "embedding_length", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.intermediate_size, IntKey(g, a + "feed_forward_length", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.num_layers, IntKey(g, a + "block_count", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.num_heads, IntKey(g, a + "attention.head_count", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.num_kv_heads, IntKey(g, a + "attention.head_count_kv", c.num_heads));
  if (!g.Has(a + "attention.key_length") && (c.num_heads <= 0 || c.hidden_size % c.num_heads)) {
    return absl::InvalidArgumentError(absl::StrCat(
        g.path(), ": ", a, "attention.head_count = ", c.num_heads,
        " does not divide embedding_length ", c.hidden_size, " and no key_length is given"));
  }
  // Derived only when it can be: key_length may come with head_count = 0 (Validate
  // rejects that), and dividing by it would be undefined.
  const std::optional<int> derived_head_dim =
      c.num_heads > 0 ? std::optional<int>(c.hidden_size / c.num_heads) : std::nullopt;
  TM_ASSIGN_OR_RETURN(c.head_dim, IntKey(g, a + "attention.key_length", derived_head_dim));
  TM_ASSIGN_OR_RETURN(const int value_dim, IntKey(g, a + "attention.value_length", c.head_dim));
  if (value_dim != c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": attention.value_length ", value_dim,
                                                   " != key_length ", c.head_dim,
                                                   " (unsupported)"));
  }
  TM_ASSIGN_OR_RETURN(c.max_position_embeddings, IntKey(g, a + "context_length", 2048));
  TM_ASSIGN_OR_RETURN(c.rms_norm_eps, FloatKey(g, a + "attention.layer_norm_rms_epsilon", 1e-5f));
  TM_RETURN_IF_ERROR(ParseRope(g, arch, &c));
  TM_RETURN_IF_ERROR(ParseVocabAndTokens(g, arch, &c));
  c.tie_word_embeddings = g.FindTensor("output.weight") == nullptr;
  // qwen2 always has q/k/v biases; llama files have them when the tensors say so.
  c.attention_bias = arch == "qwen2" || g.FindTensor("blk.0.attn_q.bias") != nullptr;
  c.name = std::filesystem::path(g.path()).stem().string();
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": ", s.message()));
  }
  return c;
}

}  // namespace tokenmill
