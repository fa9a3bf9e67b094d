#include "tokenmill/model/hf_config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "tokenmill/core/mapped_file.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

using Json = nlohmann::json;

// Defaults of the transformers config class, used when config.json omits a field.
struct ArchDefaults {
  const char* architecture;
  const char* model_type;
  int vocab_size;
  int max_position_embeddings;
  int sliding_window;  // Mistral only; Qwen2 gates it behind use_sliding_window
  std::optional<int> bos, eos;
};

constexpr ArchDefaults kArchitectures[] = {
    {"LlamaForCausalLM", "llama", 32000, 2048, 0, 1, 2},
    {"MistralForCausalLM", "mistral", 32000, 4096 * 32, 4096, 1, 2},
    {"Qwen2ForCausalLM", "qwen2", 151936, 32768, 0, std::nullopt, std::nullopt},
};

// Typed, optional-aware access to config.json fields; every error names file and field.
class Fields {
 public:
  Fields(const Json& j, const std::string& source) : j_(j), source_(source) {}

  bool Has(const std::string& key) const { return j_.contains(key); }
  // The value, or nullptr when absent or null.
  const Json* Find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  absl::Status Error(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", key, "' ", what));
  }

  absl::StatusOr<int> Int(const std::string& key, std::optional<int> fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error(key, "is required");
    }
    return ToInt(key, *v);
  }
  absl::StatusOr<int> ToInt(const std::string& key, const Json& v) const {
    // Integral floats ("4096.0") are accepted: some exporters write every number so.
    if (v.is_number()) {
      const double d = v.get<double>();
      // Range first: casting an out-of-range double (1e300) to an integer is undefined.
      if (d >= INT_MIN && d <= INT_MAX && d == std::trunc(d)) {
        return static_cast<int>(d);
      }
    }
    return Error(key, absl::StrCat("must be an integer, got ", v.dump()));
  }
  absl::StatusOr<float> Float(const std::string& key, float fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) return Error(key, absl::StrCat("must be a number, got ", v->dump()));
    return v->get<float>();
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return Error(key, absl::StrCat("must be true or false, got ", v->dump()));
    return v->get<bool>();
  }

 private:
  const Json& j_;
  const std::string& source_;
};

absl::StatusOr<const ArchDefaults*> FindArchitecture(const Json& j, const std::string& source) {
  std::string arch;
  auto archs = j.find("architectures");
  if (archs != j.end() && archs->is_array() && !archs->empty() && (*archs)[0].is_string()) {
    arch = (*archs)[0].get<std::string>();
  } else if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string()) {
    for (const ArchDefaults& a : kArchitectures) {
      if (*mt == a.model_type) return &a;
    }
    arch = absl::StrCat("model_type ", mt->get<std::string>());
  }
  for (const ArchDefaults& a : kArchitectures) {
    if (arch == a.architecture) return &a;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      source, ": architecture '", arch.empty() ? "(none given)" : arch,
      "' is not supported (supported: ", absl::StrJoin(SupportedHfArchitectures(), ", "), ")"));
}

// rope_scaling (or transformers 5's rope_parameters): types llama3 and linear.
absl::Status ParseRopeScaling(const Json& rs, const std::string& source, RopeParams* rope) {
  if (!rs.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": rope_scaling must be an object"));
  }
  const Fields f(rs, source);
  const Json* type = f.Find("rope_type");
  if (type == nullptr) type = f.Find("type");
  const std::string name = type != nullptr && type->is_string() ? type->get<std::string>() : "";
  if (name.empty() || name == "default") return absl::OkStatus();
  if (name == "linear") {
    if (f.Find("factor") == nullptr) return f.Error("rope_scaling.factor", "is required");
    rope->scaling = RopeScalingType::kLinear;
    TM_ASSIGN_OR_RETURN(rope->factor, f.Float("factor", 0.0f));
    return absl::OkStatus();
  }
  if (name == "llama3") {
    rope->scaling = RopeScalingType::kLlama3;
    for (const char* key :
         {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
      if (f.Find(key) == nullptr) return f.Error(absl::StrCat("rope_scaling.", key), "is required");
    }
    TM_ASSIGN_OR_RETURN(rope->factor, f.Float("factor", 0.0f));
    TM_ASSIGN_OR_RETURN(rope->low_freq_factor, f.Float("low_freq_factor", 0.0f));
    TM_ASSIGN_OR_RETURN(rope->high_freq_factor, f.Float("high_freq_factor", 0.0f));
    TM_ASSIGN_OR_RETURN(rope->original_max_position_embeddings,
                        f.Int("original_max_position_embeddings", std::nullopt));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(source, ": rope_scaling type '", name,
                                                 "' is not supported (supported: linear, llama3)"));
}

absl::Status ParseTokenIds(const Fields& f, const ArchDefaults& arch, ModelConfig* c) {
  c->bos_token_id = -1;
  c->eos_token_ids.clear();
  if (!f.Has("bos_token_id") && !f.Has("eos_token_id")) {  // class defaults apply
    if (arch.bos) c->bos_token_id = *arch.bos;
    if (arch.eos) c->eos_token_ids.push_back(*arch.eos);
    return absl::OkStatus();
  }
  if (const Json* bos = f.Find("bos_token_id")) {
    TM_ASSIGN_OR_RETURN(c->bos_token_id, f.ToInt("bos_token_id", *bos));
  }
  if (const Json* eos = f.Find("eos_token_id")) {
    for (const Json& id : eos->is_array() ? *eos : Json::array({*eos})) {
      TM_ASSIGN_OR_RETURN(int v, f.ToInt("eos_token_id", id));
      c->eos_token_ids.push_back(v);
    }
  }
  return absl::OkStatus();
}

// Mistral: one window for every layer. Qwen2: only with use_sliding_window, and only for
// layers at or above max_window_layers; a mix of full and windowed layers is refused.
absl::Status ParseSlidingWindow(const Fields& f, const ArchDefaults& arch, ModelConfig* c) {
  c->sliding_window = 0;
  if (arch.model_type == std::string("mistral")) {
    if (const Json* w = f.Find("sliding_window")) {
      TM_ASSIGN_OR_RETURN(c->sliding_window, f.ToInt("sliding_window", *w));
    } else if (!f.Has("sliding_window")) {  // absent: MistralConfig's default; null: none
      c->sliding_window = arch.sliding_window;
    }
    return absl::OkStatus();
  }
  if (arch.model_type != std::string("qwen2")) return absl::OkStatus();
  TM_ASSIGN_OR_RETURN(const bool enabled, f.Bool("use_sliding_window", false));
  if (!enabled) return absl::OkStatus();
  TM_ASSIGN_OR_RETURN(const int window, f.Int("sliding_window", 4096));
  TM_ASSIGN_OR_RETURN(const int max_window_layers, f.Int("max_window_layers", 28));
  const int num_windowed = std::max(0, c->num_layers - std::max(0, max_window_layers));
  if (num_windowed == 0) return absl::OkStatus();
  if (num_windowed != c->num_layers) {
    return f.Error("max_window_layers",
                   absl::StrCat("= ", max_window_layers, " mixes full and sliding-window layers ",
                                "(not supported)"));
  }
  c->sliding_window = window;
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& SupportedHfArchitectures() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const ArchDefaults& a : kArchitectures) v.push_back(a.architecture);
    return v;
  }();
  return kNames;
}

absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& source) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": config is not a JSON object"));
  }
  TM_ASSIGN_OR_RETURN(const ArchDefaults* arch, FindArchitecture(j, source));
  const Fields f(j, source);
  ModelConfig c;
  c.architecture = arch->architecture;
  TM_ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size", arch->vocab_size));
  TM_ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.num_heads, f.Int("num_attention_heads", std::nullopt));
  TM_ASSIGN_OR_RETURN(c.num_kv_heads, f.Int("num_key_value_heads", c.num_heads));
  if (f.Find("head_dim") == nullptr && (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0)) {
    return f.Error("num_attention_heads",
                   absl::StrCat("= ", c.num_heads, " does not divide hidden_size ", c.hidden_size,
                                " and no head_dim is given"));
  }
  // Derived only when it can be: head_dim may be given alongside num_attention_heads = 0
  // (Validate rejects that), and dividing by it would be undefined.
  const std::optional<int> derived_head_dim =
      c.num_heads > 0 ? std::optional<int>(c.hidden_size / c.num_heads) : std::nullopt;
  TM_ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim", derived_head_dim));
  TM_ASSIGN_OR_RETURN(c.max_position_embeddings,
                      f.Int("max_position_embeddings", arch->max_position_embeddings));
  TM_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Float("rms_norm_eps", 1e-6f));
  TM_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));

  if (const Json* act = f.Find("hidden_act"); act != nullptr && *act != "silu") {
    return f.Error("hidden_act", absl::StrCat("= ", act->dump(), " is not supported (silu only)"));
  }
  const bool is_llama = c.architecture == "LlamaForCausalLM";
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    TM_ASSIGN_OR_RETURN(const bool bias, f.Bool(key, false));
    if (bias && is_llama) {
      return f.Error(key, "= true (bias on o_proj / MLP projections) is not supported");
    }
  }
  c.attention_bias = c.architecture == "Qwen2ForCausalLM";  // Qwen2 always has q/k/v bias

  c.rope.head_dim = c.head_dim;
  c.rope.rotary_dim = c.head_dim;
  c.rope.is_neox = true;
  const Json* rope_params = f.Find("rope_parameters");  // transformers >= 5
  const Fields rope_fields(rope_params != nullptr ? *rope_params : j, source);
  TM_ASSIGN_OR_RETURN(c.rope.theta, rope_fields.Float("rope_theta", 10000.0f));
  if (const Json* rs = f.Find("rope_scaling")) {
    TM_RETURN_IF_ERROR(ParseRopeScaling(*rs, source, &c.rope));
  } else if (rope_params != nullptr) {
    TM_RETURN_IF_ERROR(ParseRopeScaling(*rope_params, source, &c.rope));
  }
  TM_RETURN_IF_ERROR(ParseTokenIds(f, *arch, &c));
  TM_RETURN_IF_ERROR(ParseSlidingWindow(f, *arch, &c));
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  const std::string text(reinterpret_cast<const char*>(file->data()), file->size());
  TM_ASSIGN_OR_RETURN(ModelConfig c, ParseHfConfig(text, path));
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  c.name = dir.filename().string();
  return c;
}

}  // namespace tokenmill
