#include "model/weight_binder.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenmill/core/status.h"

namespace tokenmill::model_internal {

const WeightNames& GgufWeightNames() {
  static const WeightNames kNames = {
      "token_embd.weight",   "output_norm.weight", "output.weight",  "blk.",
      ".attn_norm.weight",   ".attn_q.weight",     ".attn_k.weight", ".attn_v.weight",
      ".attn_output.weight", ".attn_q.bias",       ".attn_k.bias",   ".attn_v.bias",
      ".ffn_norm.weight",    ".ffn_gate.weight",   ".ffn_up.weight", ".ffn_down.weight",
  };
  return kNames;
}

const WeightNames& HfWeightNames() {
  static const WeightNames kNames = {
      "model.embed_tokens.weight",
      "model.norm.weight",
      "lm_head.weight",
      "model.layers.",
      ".input_layernorm.weight",
      ".self_attn.q_proj.weight",
      ".self_attn.k_proj.weight",
      ".self_attn.v_proj.weight",
      ".self_attn.o_proj.weight",
      ".self_attn.q_proj.bias",
      ".self_attn.k_proj.bias",
      ".self_attn.v_proj.bias",
      ".post_attention_layernorm.weight",
      ".mlp.gate_proj.weight",
      ".mlp.up_proj.weight",
      ".mlp.down_proj.weight",
  };
  return kNames;
}

namespace {

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

size_t ElementAlignment(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
      return 2;
    case DType::kI8:
      return 1;
  }
  return 1;
}

// Converts `n` elements stored as `dtype` to floats.
void ConvertToF32(DType dtype, const uint8_t* src, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = dtype == DType::kF16 ? F16ToF32(h) : Bf16ToF32(h);
      }
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / kQ8_0BlockElems; ++b) {
        const uint8_t* block = src + b * kQ8_0BlockBytes;
        uint16_t scale;
        std::memcpy(&scale, block, 2);
        const float d = F16ToF32(scale);
        for (int i = 0; i < kQ8_0BlockElems; ++i) {
          dst[b * kQ8_0BlockElems + i] = d * static_cast<int8_t>(block[2 + i]);
        }
      }
      return;
    case DType::kI32:
    case DType::kI8:
      break;
  }
  TM_CHECK(false, "ConvertToF32 called with an integer dtype");
}

class Binder {
 public:
  Binder(const TensorLookup& lookup, const std::string& where, LoadedModel* model)
      : lookup_(lookup), where_(where), model_(model) {}

  bool Has(const std::string& name) const { return lookup_(name).has_value(); }

  // A [rows, cols] weight matrix, used in place.
  absl::StatusOr<TensorView> Matrix(const std::string& name, int64_t rows, int64_t cols) {
    TM_ASSIGN_OR_RETURN(SourceTensor t, Find(name, {rows, cols}));
    const DType dtype = *t.dtype;
    if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16 &&
        dtype != DType::kQ8_0) {
      return absl::InvalidArgumentError(
          absl::StrCat(t.file, ": tensor '", name, "' has dtype ", t.dtype_name,
                       "; weight matrices must be F32, F16, BF16 or Q8_0"));
    }
    if (dtype == DType::kQ8_0 && cols % kQ8_0BlockElems != 0) {
      return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", name, "' is Q8_0 with ",
                                                     cols,
                                                     " input features, not a multiple of 32"));
    }
    TensorView v;
    v.dtype = dtype;
    v.shape = Shape{rows, cols};
    v.data = const_cast<uint8_t*>(t.data);  // read-only map; views never write weights
    if (reinterpret_cast<uintptr_t>(t.data) % ElementAlignment(dtype) != 0) {
      // Legal but rare in safetensors: copy rather than hand out misaligned pointers.
      uint8_t* copy = Own(v.NumBytes());
      std::memcpy(copy, t.data, v.NumBytes());
      v.data = copy;
    }
    return v;
  }

  // A [n] norm weight or bias, converted to F32.
  absl::StatusOr<TensorView> Vector(const std::string& name, int64_t n) {
    TM_ASSIGN_OR_RETURN(SourceTensor t, Find(name, {n}));
    if (*t.dtype == DType::kI32 || *t.dtype == DType::kI8 ||
        (*t.dtype == DType::kQ8_0 && n % kQ8_0BlockElems != 0)) {
      return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", name, "' has dtype ",
                                                     t.dtype_name, "; expected a float type"));
    }
    TensorView v;
    v.dtype = DType::kF32;
    v.shape = Shape{n};
    v.data = Own(v.NumBytes());
    ConvertToF32(*t.dtype, t.data, n, v.As<float>());
    return v;
  }

 private:
  absl::StatusOr<SourceTensor> Find(const std::string& name, const std::vector<int64_t>& dims) {
    std::optional<SourceTensor> t = lookup_(name);
    if (!t.has_value()) {
      return absl::NotFoundError(absl::StrCat(where_, ": tensor '", name, "' not found"));
    }
    if (!t->dtype.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", name,
                                                     "' has unsupported dtype ", t->dtype_name,
                                                     " (supported: F32, F16, BF16, Q8_0)"));
    }
    if (t->dims != dims) {
      return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", name, "' has shape ",
                                                     DimsString(t->dims), ", expected ",
                                                     DimsString(dims), " from the model config"));
    }
    return *std::move(t);
  }

  uint8_t* Own(size_t num_bytes) {
    model_->owned.push_back(std::make_unique<uint8_t[]>(num_bytes));
    return model_->owned.back().get();
  }

  const TensorLookup& lookup_;
  const std::string& where_;
  LoadedModel* model_;
};

absl::Status BindLayer(Binder& b, const WeightNames& n, int i, const ModelConfig& c,
                       LayerWeights* l) {
  const std::string p = absl::StrCat(n.layer_prefix, i);
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  TM_ASSIGN_OR_RETURN(l->attn_norm, b.Vector(p + n.attn_norm, hidden));
  TM_ASSIGN_OR_RETURN(l->wq, b.Matrix(p + n.wq, q_dim, hidden));
  TM_ASSIGN_OR_RETURN(l->wk, b.Matrix(p + n.wk, kv_dim, hidden));
  TM_ASSIGN_OR_RETURN(l->wv, b.Matrix(p + n.wv, kv_dim, hidden));
  TM_ASSIGN_OR_RETURN(l->wo, b.Matrix(p + n.wo, hidden, q_dim));
  if (c.attention_bias) {
    TM_ASSIGN_OR_RETURN(l->bq, b.Vector(p + n.bq, q_dim));
    TM_ASSIGN_OR_RETURN(l->bk, b.Vector(p + n.bk, kv_dim));
    TM_ASSIGN_OR_RETURN(l->bv, b.Vector(p + n.bv, kv_dim));
  }
  TM_ASSIGN_OR_RETURN(l->ffn_norm, b.Vector(p + n.ffn_norm, hidden));
  TM_ASSIGN_OR_RETURN(l->w_gate, b.Matrix(p + n.w_gate, c.intermediate_size, hidden));
  TM_ASSIGN_OR_RETURN(l->w_up, b.Matrix(p + n.w_up, c.intermediate_size, hidden));
  TM_ASSIGN_OR_RETURN(l->w_down, b.Matrix(p + n.w_down, hidden, c.intermediate_size));
  return absl::OkStatus();
}

}  // namespace

absl::Status BindWeights(const TensorLookup& lookup, const std::string& where,
                         const WeightNames& names, LoadedModel* model) {
  ModelConfig& c = model->config;
  ModelWeights& w = model->weights;
  Binder b(lookup, where, model);
  TM_ASSIGN_OR_RETURN(w.tok_embd, b.Matrix(names.tok_embd, c.vocab_size, c.hidden_size));
  TM_ASSIGN_OR_RETURN(w.output_norm, b.Vector(names.output_norm, c.hidden_size));
  if (!c.tie_word_embeddings && b.Has(names.lm_head)) {
    TM_ASSIGN_OR_RETURN(w.lm_head, b.Matrix(names.lm_head, c.vocab_size, c.hidden_size));
  } else {
    w.lm_head = w.tok_embd;
    c.tie_word_embeddings = true;
  }
  w.layers.assign(c.num_layers, LayerWeights{});
  for (int i = 0; i < c.num_layers; ++i) {
    TM_RETURN_IF_ERROR(BindLayer(b, names, i, c, &w.layers[i]));
  }
  return absl::OkStatus();
}

}  // namespace tokenmill::model_internal
