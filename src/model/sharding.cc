#include "tokenmill/model/sharding.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

bool KvHeadsSplit(int num_kv_heads, int n) {
  return num_kv_heads % n == 0 || n % num_kv_heads == 0;
}

// Rank counts up to 64 that the config allows, for error messages.
std::string WorkingSizes(const ModelConfig& c) {
  std::vector<int> ok;
  for (int n = 1; n <= 64; ++n) {
    if (c.num_heads % n == 0 && c.intermediate_size % n == 0 && KvHeadsSplit(c.num_kv_heads, n) &&
        n <= c.vocab_size) {
      ok.push_back(n);
    }
  }
  return absl::StrJoin(ok, ", ");
}

std::string LayerTensor(int layer, const char* name) {
  return absl::StrCat("layer ", layer, " ", name);
}

// Rows [row0, row0 + rows) of a matrix, or elements of a vector: a view, no copy.
absl::StatusOr<TensorView> RowSlice(const TensorView& t, int64_t row0, int64_t rows,
                                    const std::string& name) {
  if (t.data == nullptr) return TensorView{};
  if (t.shape.rank < 1 || t.shape.rank > 2 || row0 < 0 || row0 + rows > t.shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat("sharding ", name, ": rows [", row0, ", ",
                                                   row0 + rows, ") do not fit shape ",
                                                   t.shape.ToString()));
  }
  TensorView v = t;
  const int64_t row_elems = t.shape.rank == 2 ? t.shape[1] : 1;
  v.data = static_cast<uint8_t*>(t.data) + DTypeBytes(t.dtype, row0 * row_elems);
  v.shape = t.shape.rank == 2 ? Shape{rows, t.shape[1]} : Shape{rows};
  return v;
}

// Columns [col0, col0 + cols) of a [rows, in] matrix, copied into a buffer `owner` keeps.
absl::StatusOr<TensorView> ColumnSliceCopy(const TensorView& t, int64_t col0, int64_t cols,
                                           const std::string& name, LoadedModel* owner) {
  if (t.shape.rank != 2 || col0 < 0 || col0 + cols > t.shape[1]) {
    return absl::InvalidArgumentError(absl::StrCat("sharding ", name, ": columns [", col0, ", ",
                                                   col0 + cols, ") do not fit shape ",
                                                   t.shape.ToString()));
  }
  if (t.dtype == DType::kQ8_0 && (col0 % kQ8_0BlockElems != 0 || cols % kQ8_0BlockElems != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sharding ", name, " (Q8_0, ", t.shape.ToString(), "): each rank's ", cols,
        " input columns must be whole 32-element blocks; use fewer ranks or an F16/BF16 model"));
  }
  const int64_t rows = t.shape[0];
  const size_t in_row = DTypeBytes(t.dtype, t.shape[1]);
  const size_t offset = DTypeBytes(t.dtype, col0);
  const size_t out_row = DTypeBytes(t.dtype, cols);
  std::unique_ptr<uint8_t[]> buf(new uint8_t[rows * out_row]);
  const uint8_t* src = static_cast<const uint8_t*>(t.data);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(buf.get() + r * out_row, src + r * in_row + offset, out_row);
  }
  TensorView v = t;
  v.data = buf.get();
  v.shape = Shape{rows, cols};
  owner->owned.push_back(std::move(buf));
  return v;
}

absl::Status ShardLayer(const LayerWeights& w, const ModelConfig& whole, int layer, int rank, int n,
                        LoadedModel* out, LayerWeights* s) {
  const int64_t hd = whole.head_dim;
  const int64_t heads = whole.num_heads / n;
  const int64_t q0 = rank * heads * hd, q_rows = heads * hd;
  const HeadRange kv = KvHeadShard(whole, rank, n);
  const int64_t k0 = kv.start * hd, k_rows = kv.size * hd;
  const int64_t ffn = whole.intermediate_size / n, f0 = rank * ffn;
  *s = w;  // norms stay whole
  TM_ASSIGN_OR_RETURN(s->wq, RowSlice(w.wq, q0, q_rows, LayerTensor(layer, "q_proj")));
  TM_ASSIGN_OR_RETURN(s->bq, RowSlice(w.bq, q0, q_rows, LayerTensor(layer, "q_proj bias")));
  TM_ASSIGN_OR_RETURN(s->wk, RowSlice(w.wk, k0, k_rows, LayerTensor(layer, "k_proj")));
  TM_ASSIGN_OR_RETURN(s->bk, RowSlice(w.bk, k0, k_rows, LayerTensor(layer, "k_proj bias")));
  TM_ASSIGN_OR_RETURN(s->wv, RowSlice(w.wv, k0, k_rows, LayerTensor(layer, "v_proj")));
  TM_ASSIGN_OR_RETURN(s->bv, RowSlice(w.bv, k0, k_rows, LayerTensor(layer, "v_proj bias")));
  TM_ASSIGN_OR_RETURN(s->w_gate, RowSlice(w.w_gate, f0, ffn, LayerTensor(layer, "gate_proj")));
  TM_ASSIGN_OR_RETURN(s->w_up, RowSlice(w.w_up, f0, ffn, LayerTensor(layer, "up_proj")));
  TM_ASSIGN_OR_RETURN(s->wo, ColumnSliceCopy(w.wo, q0, q_rows, LayerTensor(layer, "o_proj"), out));
  TM_ASSIGN_OR_RETURN(s->w_down,
                      ColumnSliceCopy(w.w_down, f0, ffn, LayerTensor(layer, "down_proj"), out));
  return absl::OkStatus();
}

}  // namespace

VocabRange VocabShard(int vocab_size, int rank, int world_size) {
  TM_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rank ", rank, " of ", world_size);
  const int base = vocab_size / world_size, extra = vocab_size % world_size;
  return {rank * base + std::min(rank, extra), base + (rank < extra ? 1 : 0)};
}

int MaxVocabShardSize(int vocab_size, int world_size) {
  return (vocab_size + world_size - 1) / world_size;
}

HeadRange KvHeadShard(const ModelConfig& c, int rank, int world_size) {
  if (c.num_kv_heads % world_size == 0) {
    const int per = c.num_kv_heads / world_size;
    return {rank * per, per};
  }
  // Replicated: ranks rank * H/N.. read KV head (rank * H/N) / (H/KV) = rank / (N/KV).
  return {rank / (world_size / c.num_kv_heads), 1};
}

absl::Status CheckShardable(const ModelConfig& c, int n) {
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallelism ", n,
                                                   " does not fit model '", c.name, "': ", parts...,
                                                   ". Rank counts that fit: ", WorkingSizes(c)));
  };
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("tensor parallelism ", n, " < 1"));
  if (c.tp_size != 1) {
    return absl::InvalidArgumentError(absl::StrCat("model '", c.name, "' is already a shard (rank ",
                                                   c.tp_rank, " of ", c.tp_size, ")"));
  }
  if (c.num_heads % n != 0) return bad("num_attention_heads ", c.num_heads, " is not divisible");
  if (c.intermediate_size % n != 0) {
    return bad("intermediate_size ", c.intermediate_size, " is not divisible");
  }
  if (!KvHeadsSplit(c.num_kv_heads, n)) {
    return bad("num_key_value_heads ", c.num_kv_heads,
               " can be neither divided among nor replicated over the ranks");
  }
  if (c.vocab_size < n) return bad("vocab_size ", c.vocab_size, " is smaller");
  return absl::OkStatus();
}

absl::Status CheckShardable(const LoadedModel& model, int n) {
  TM_RETURN_IF_ERROR(CheckShardable(model.config, n));
  const ModelConfig& c = model.config;
  for (size_t l = 0; l < model.weights.layers.size(); ++l) {
    const LayerWeights& w = model.weights.layers[l];
    const int64_t o_cols = int64_t{c.num_heads} / n * c.head_dim;
    const int64_t down_cols = c.intermediate_size / n;
    for (auto [t, cols, name] :
         {std::tuple{&w.wo, o_cols, "o_proj"}, std::tuple{&w.w_down, down_cols, "down_proj"}}) {
      if (t->dtype == DType::kQ8_0 && cols % kQ8_0BlockElems != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor parallelism ", n, " does not fit model '", c.name,
                         "': ", LayerTensor(static_cast<int>(l), name), " is Q8_0 and each rank's ",
                         cols, " input columns are not whole 32-element blocks"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LoadedModel>> ShardModel(const LoadedModel& model, int rank, int n) {
  TM_RETURN_IF_ERROR(CheckShardable(model, n));
  if (rank < 0 || rank >= n) {
    return absl::InvalidArgumentError(absl::StrCat("shard rank ", rank, " is not in [0, ", n, ")"));
  }
  const ModelConfig& whole = model.config;
  auto out = std::make_unique<LoadedModel>();
  out->path = model.path;
  out->format = model.format;
  out->model_dir = model.model_dir;
  out->gguf = model.gguf;
  out->files = model.files;  // the maps stay alive with the shard; `owned` is borrowed
  ModelConfig& c = out->config;
  c = whole;
  const HeadRange kv = KvHeadShard(whole, rank, n);
  const VocabRange vocab = VocabShard(whole.vocab_size, rank, n);
  c.num_heads = whole.num_heads / n;
  c.num_kv_heads = kv.size;
  c.intermediate_size = whole.intermediate_size / n;
  c.tp_rank = rank;
  c.tp_size = n;
  c.tp_vocab_start = vocab.start;
  c.tp_vocab_size = vocab.size;

  const ModelWeights& w = model.weights;
  ModelWeights& s = out->weights;
  s.tok_embd = w.tok_embd;
  s.output_norm = w.output_norm;
  TM_ASSIGN_OR_RETURN(s.lm_head, RowSlice(w.lm_head, vocab.start, vocab.size, "lm_head"));
  s.layers.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    TM_RETURN_IF_ERROR(
        ShardLayer(w.layers[l], whole, static_cast<int>(l), rank, n, out.get(), &s.layers[l]));
  }
  TM_RETURN_IF_ERROR(c.Validate());
  return out;
}

}  // namespace tokenmill
