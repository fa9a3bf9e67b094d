#include "model/testing/model_writers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "model/testing/gguf_writer.h"
#include "model/testing/safetensors_writer.h"
#include "tokenmill/core/dtype.h"
#include "tokenmill/core/gguf.h"

namespace tokenmill::testing {
namespace {

int HeadDim(const TinyModelOptions& o) {
  return o.head_dim > 0 ? o.head_dim : o.hidden_size / o.num_heads;
}

bool IsQwen2(const TinyModelOptions& o) { return o.architecture == "Qwen2ForCausalLM"; }
bool HasBias(const TinyModelOptions& o) { return o.attention_bias || IsQwen2(o); }

// Rows of a [num_heads * head_dim, ...] projection, reordered from HF's half-split RoPE
// layout to the interleaved one (llama.cpp convert_hf_to_gguf.py, LlamaModel.permute).
std::vector<float> PermuteForInterleavedRope(const std::vector<float>& v, int num_heads,
                                             int head_dim, int64_t cols) {
  if (v.size() != static_cast<size_t>(num_heads) * head_dim * cols)
    return v;  // a broken test shape
  std::vector<float> out(v.size());
  const int half = head_dim / 2;
  for (int h = 0; h < num_heads; ++h) {
    for (int i = 0; i < half; ++i) {
      for (int part = 0; part < 2; ++part) {
        const int64_t from = static_cast<int64_t>(h) * head_dim + part * half + i;
        const int64_t to = static_cast<int64_t>(h) * head_dim + 2 * i + part;
        std::copy_n(v.begin() + from * cols, cols, out.begin() + to * cols);
      }
    }
  }
  return out;
}

uint32_t GgmlTypeOf(const std::string& dtype) {
  if (dtype == "F32") return ggml_type::kF32;
  if (dtype == "F16") return ggml_type::kF16;
  if (dtype == "BF16") return ggml_type::kBF16;
  if (dtype == "Q8_0") return ggml_type::kQ8_0;
  if (dtype == "Q4_K") return ggml_type::kQ4_K;
  if (dtype == "I32") return ggml_type::kI32;
  if (dtype == "I8") return ggml_type::kI8;
  if (dtype == "F64") return ggml_type::kF64;
  ADD_FAILURE() << "no ggml type for dtype " << dtype;
  return ggml_type::kF32;
}

}  // namespace

TinyTensor* TinyModel::Find(const std::string& name) {
  for (TinyTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void TinyModel::Remove(const std::string& name) {
  std::erase_if(tensors, [&](const TinyTensor& t) { return t.name == name; });
}

TinyModel MakeTinyModel(const TinyModelOptions& o) {
  TinyModel m;
  m.options = o;
  std::mt19937 rng(o.seed);
  std::normal_distribution<float> normal(0.0f, o.init_std);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool is_norm) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> values(n);
    for (float& x : values) x = is_norm ? 1.0f + normal(rng) : normal(rng);
    m.tensors.push_back({name, std::move(shape), std::move(values), "", ""});
  };
  const int64_t hidden = o.hidden_size, hd = HeadDim(o);
  const int64_t q_dim = o.num_heads * hd, kv_dim = o.num_kv_heads * hd;
  add("model.embed_tokens.weight", {o.vocab_size, hidden}, false);
  for (int i = 0; i < o.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i);
    add(p + ".input_layernorm.weight", {hidden}, true);
    add(p + ".self_attn.q_proj.weight", {q_dim, hidden}, false);
    add(p + ".self_attn.k_proj.weight", {kv_dim, hidden}, false);
    add(p + ".self_attn.v_proj.weight", {kv_dim, hidden}, false);
    if (HasBias(o)) {
      add(p + ".self_attn.q_proj.bias", {q_dim}, false);
      add(p + ".self_attn.k_proj.bias", {kv_dim}, false);
      add(p + ".self_attn.v_proj.bias", {kv_dim}, false);
    }
    add(p + ".self_attn.o_proj.weight", {hidden, q_dim}, false);
    add(p + ".post_attention_layernorm.weight", {hidden}, true);
    add(p + ".mlp.gate_proj.weight", {o.intermediate_size, hidden}, false);
    add(p + ".mlp.up_proj.weight", {o.intermediate_size, hidden}, false);
    add(p + ".mlp.down_proj.weight", {hidden, o.intermediate_size}, false);
  }
  add("model.norm.weight", {hidden}, true);
  if (!o.tie_word_embeddings) add("lm_head.weight", {o.vocab_size, hidden}, false);
  return m;
}

nlohmann::json HfConfigJson(const TinyModel& m) {
  const TinyModelOptions& o = m.options;
  nlohmann::json j = {
      {"architectures", {o.architecture}},
      {"hidden_size", o.hidden_size},
      {"intermediate_size", o.intermediate_size},
      {"num_hidden_layers", o.num_layers},
      {"num_attention_heads", o.num_heads},
      {"num_key_value_heads", o.num_kv_heads},
      {"head_dim", HeadDim(o)},
      {"max_position_embeddings", o.max_position_embeddings},
      {"rms_norm_eps", o.rms_norm_eps},
      {"rope_theta", o.rope_theta},
      {"tie_word_embeddings", o.tie_word_embeddings},
      {"vocab_size", o.vocab_size},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"hidden_act", "silu"},
      {"torch_dtype", o.dtype == "BF16"  ? "bfloat16"
                      : o.dtype == "F16" ? "float16"
                                         : "float32"},
  };
  if (o.architecture == "MistralForCausalLM") j["sliding_window"] = nullptr;
  j.merge_patch(o.extra_config);
  return j;
}

std::string EncodeTensor(const std::vector<float>& values, const std::string& dtype) {
  std::string out;
  auto put = [&out](const auto& x) { out.append(reinterpret_cast<const char*>(&x), sizeof(x)); };
  if (dtype == "Q8_0") {  // ggml's quantize_row_q8_0_ref
    for (size_t b = 0; b + kQ8_0BlockElems <= values.size(); b += kQ8_0BlockElems) {
      float amax = 0.0f;
      for (int i = 0; i < kQ8_0BlockElems; ++i) amax = std::max(amax, std::fabs(values[b + i]));
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      put(F32ToF16(d));
      for (int i = 0; i < kQ8_0BlockElems; ++i) {
        put(static_cast<int8_t>(std::lround(values[b + i] * id)));
      }
    }
    return out;
  }
  for (float x : values) {
    if (dtype == "F32")
      put(x);
    else if (dtype == "F16")
      put(F32ToF16(x));
    else if (dtype == "BF16")
      put(F32ToBf16(x));
    else if (dtype == "F64")
      put(static_cast<double>(x));
    else if (dtype == "I32")
      put(static_cast<int32_t>(x));
    else if (dtype == "I8")
      put(static_cast<int8_t>(x));
    else
      ADD_FAILURE() << "cannot encode dtype " << dtype;
  }
  return out;
}

namespace {

bool IsVector(const TinyTensor& t) { return t.shape.size() == 1; }

std::string DTypeOf(const TinyModel& m, const TinyTensor& t) {
  if (!t.dtype.empty()) return t.dtype;
  return IsVector(t) ? "F32" : m.options.dtype;
}

std::string BytesOf(const TinyModel& m, const TinyTensor& t) {
  return t.raw_bytes.empty() ? EncodeTensor(t.values, DTypeOf(m, t)) : t.raw_bytes;
}

}  // namespace

absl::Status WriteHfCheckpoint(const TinyModel& m, const std::string& dir, int num_shards) {
  std::filesystem::create_directories(dir);
  const std::string config = HfConfigJson(m).dump(2);
  if (absl::Status s = WriteBytes(dir + "/config.json", config); !s.ok()) return s;
  if (num_shards <= 1) {
    SafetensorsWriter w;
    w.SetMetadata("format", "pt");
    for (const TinyTensor& t : m.tensors)
      w.AddTensor(t.name, DTypeOf(m, t), t.shape, BytesOf(m, t));
    return w.WriteFile(dir + "/model.safetensors");
  }
  std::vector<SafetensorsWriter> shards(num_shards);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TinyTensor& t = m.tensors[i];
    const int shard = static_cast<int>(i * num_shards / m.tensors.size());
    shards[shard].AddTensor(t.name, DTypeOf(m, t), t.shape, BytesOf(m, t));
    weight_map[t.name] = absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1, num_shards);
  }
  for (int s = 0; s < num_shards; ++s) {
    const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, num_shards);
    if (absl::Status st = shards[s].WriteFile(dir + "/" + name); !st.ok()) return st;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  return WriteBytes(dir + "/model.safetensors.index.json", index.dump(2));
}

std::string GgufTensorName(const std::string& hf) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  for (const auto& [from, to] : kTop) {
    if (hf == from) return to;
  }
  static const std::pair<const char*, const char*> kLayer[] = {
      {".input_layernorm.weight", ".attn_norm.weight"},
      {".self_attn.q_proj.weight", ".attn_q.weight"},
      {".self_attn.k_proj.weight", ".attn_k.weight"},
      {".self_attn.v_proj.weight", ".attn_v.weight"},
      {".self_attn.o_proj.weight", ".attn_output.weight"},
      {".self_attn.q_proj.bias", ".attn_q.bias"},
      {".self_attn.k_proj.bias", ".attn_k.bias"},
      {".self_attn.v_proj.bias", ".attn_v.bias"},
      {".post_attention_layernorm.weight", ".ffn_norm.weight"},
      {".mlp.gate_proj.weight", ".ffn_gate.weight"},
      {".mlp.up_proj.weight", ".ffn_up.weight"},
      {".mlp.down_proj.weight", ".ffn_down.weight"}};
  const std::string prefix = "model.layers.";
  if (!hf.starts_with(prefix)) return "";
  const size_t dot = hf.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
  for (const auto& [from, to] : kLayer) {
    if (hf.substr(dot) == from) return "blk." + layer + to;
  }
  return "";
}

absl::Status WriteGgufModel(const TinyModel& m, const std::string& path) {
  const TinyModelOptions& o = m.options;
  const std::string arch = IsQwen2(o) ? "qwen2" : "llama";
  GgufWriter w;
  w.AddString("general.architecture", arch);
  w.AddString("general.name", "tiny");
  w.AddU32(arch + ".context_length", o.max_position_embeddings);
  w.AddU32(arch + ".embedding_length", o.hidden_size);
  w.AddU32(arch + ".block_count", o.num_layers);
  w.AddU32(arch + ".feed_forward_length", o.intermediate_size);
  w.AddU32(arch + ".attention.head_count", o.num_heads);
  w.AddU32(arch + ".attention.head_count_kv", o.num_kv_heads);
  w.AddU32(arch + ".attention.key_length", HeadDim(o));
  w.AddU32(arch + ".attention.value_length", HeadDim(o));
  w.AddU32(arch + ".rope.dimension_count", HeadDim(o));
  w.AddF32(arch + ".rope.freq_base", o.rope_theta);
  w.AddF32(arch + ".attention.layer_norm_rms_epsilon", o.rms_norm_eps);
  w.AddString("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  while (static_cast<int>(tokens.size()) < o.vocab_size) {
    scores.push_back(-static_cast<float>(tokens.size()));
    tokens.push_back(absl::StrCat("t", tokens.size()));
    types.push_back(1);
  }
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddF32Array("tokenizer.ggml.scores", scores);
  w.AddI32Array("tokenizer.ggml.token_type", types);
  w.AddU32("tokenizer.ggml.bos_token_id", 1);
  w.AddU32("tokenizer.ggml.eos_token_id", 2);
  const int hd = HeadDim(o);
  for (const TinyTensor& t : m.tensors) {
    std::string name = GgufTensorName(t.name);
    if (name.empty()) name = t.name;
    std::vector<float> values = t.values;
    const bool is_q = name.ends_with("attn_q.weight") || name.ends_with("attn_q.bias");
    const bool is_k = name.ends_with("attn_k.weight") || name.ends_with("attn_k.bias");
    if (arch == "llama" && (is_q || is_k) && t.raw_bytes.empty()) {
      const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
      values = PermuteForInterleavedRope(values, is_q ? o.num_heads : o.num_kv_heads, hd, cols);
    }
    const std::string dtype = DTypeOf(m, t);
    w.AddTensor(name, GgmlTypeOf(dtype), t.shape,
                t.raw_bytes.empty() ? EncodeTensor(values, dtype) : t.raw_bytes);
  }
  return w.WriteFile(path);
}

}  // namespace tokenmill::testing
