#include "tokenmill/model/llama_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"
#include "tokenmill/model/sharding.h"

namespace tokenmill {

namespace {

// The first `rows` rows of a [max_rows, cols] buffer.
TensorView Rows(const TensorView& t, int64_t rows) {
  TensorView v = t;
  v.shape = Shape{rows, t.shape[t.shape.rank - 1]};
  return v;
}

const TensorView* OptionalBias(const TensorView& t) { return t.data != nullptr ? &t : nullptr; }

// The rank's Communicator as the backend sees a group (backend/ cannot include parallel/).
class CommunicatorGroup final : public CollectiveGroup {
 public:
  explicit CommunicatorGroup(Communicator* comm) : comm_(comm) {}
  int world_size() const override { return comm_->world_size(); }
  void* device_stream() const override {
    return comm_->memory_space() == MemorySpace::kDevice ? comm_->stream() : nullptr;
  }
  absl::Status AllReduceSum(float* data, int64_t count) override {
    return comm_->AllReduceSum(data, count);
  }
  absl::Status AllGather(const float* send, int64_t count, float* recv) override {
    return comm_->AllGather(send, count, recv);
  }
  absl::Status Synchronize() override { return comm_->Synchronize(); }

 private:
  Communicator* comm_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(const LoadedModel& model,
                                                               Backend* backend,
                                                               const LlamaModelOptions& options) {
  TM_RETURN_IF_ERROR(model.config.Validate());
  if (options.max_num_tokens < 1 || options.max_num_logits < 1) {
    return absl::InvalidArgumentError("max_num_tokens and max_num_logits must be >= 1");
  }
  std::unique_ptr<LlamaModel> m(new LlamaModel(model.config, backend, options));
  TM_RETURN_IF_ERROR(m->CheckCommunicator());
  TM_RETURN_IF_ERROR(m->UploadWeights(model.weights));
  TM_RETURN_IF_ERROR(m->AllocateActivations());
  return m;
}

LlamaModel::~LlamaModel() {
  for (const TensorView& t : allocated_) backend_->Free(t);
}

absl::Status LlamaModel::CheckCommunicator() {
  const ModelConfig& c = config_;
  if (!is_sharded()) {
    if (comm_ != nullptr && comm_->world_size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", c.name, "' is whole but the communicator has ", comm_->world_size(),
          " ranks; give each rank its ShardModel() shard"));
    }
    comm_ = nullptr;  // one rank: no collectives at all
    return absl::OkStatus();
  }
  if (comm_ == nullptr || comm_->world_size() != c.tp_size || comm_->rank() != c.tp_rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", c.name, "' is shard ", c.tp_rank, " of ", c.tp_size,
        " and needs that rank's communicator (got ",
        comm_ == nullptr ? std::string("none")
                         : absl::StrCat("rank ", comm_->rank(), " of ", comm_->world_size()),
        ")"));
  }
  if (comm_->memory_space() == MemorySpace::kDevice) {
    // Device collectives are ops of the backend's stream: the communicator must enqueue
    // on that very stream, or they would race the ops around them.
    void* stream = backend_->device_stream();
    if (stream == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", c.name, "' rank ", c.tp_rank, ": backend '",
          std::string(backend_->Name()),
          "' takes host communicators (loopback, tcp), not device-memory ones (NCCL)"));
    }
    if (comm_->stream() != stream) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", c.name, "' rank ", c.tp_rank,
          ": the NCCL communicator must enqueue on the backend's stream "
          "(NcclOptions::stream = backend->device_stream())"));
    }
  }
  group_ = std::make_unique<CommunicatorGroup>(comm_);
  return absl::OkStatus();
}

absl::Status LlamaModel::UploadWeights(const ModelWeights& w) {
  if (static_cast<int>(w.layers.size()) != config_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("model has ", w.layers.size(),
                                                   " layers of weights, config says ",
                                                   config_.num_layers));
  }
  auto up = [&](const TensorView& host, TensorView* out) -> absl::Status {
    if (host.data == nullptr) {
      *out = TensorView{};
      return absl::OkStatus();
    }
    TM_ASSIGN_OR_RETURN(*out, backend_->UploadWeight(host));
    return absl::OkStatus();
  };
  TM_RETURN_IF_ERROR(up(w.tok_embd, &tok_embd_));
  TM_RETURN_IF_ERROR(up(w.output_norm, &output_norm_));
  if (w.lm_head.data == w.tok_embd.data && w.lm_head.shape == w.tok_embd.shape) {
    lm_head_ = tok_embd_;  // tied: one copy on the device
  } else {
    TM_RETURN_IF_ERROR(up(w.lm_head, &lm_head_));
  }
  layers_.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& h = w.layers[i];
    DeviceLayer& d = layers_[i];
    for (auto [src, dst] : {std::pair{&h.attn_norm, &d.attn_norm}, {&h.wq, &d.wq}, {&h.wk, &d.wk},
                            {&h.wv, &d.wv}, {&h.wo, &d.wo}, {&h.bq, &d.bq}, {&h.bk, &d.bk},
                            {&h.bv, &d.bv}, {&h.ffn_norm, &d.ffn_norm}, {&h.w_gate, &d.w_gate},
                            {&h.w_up, &d.w_up}, {&h.w_down, &d.w_down}}) {
      TM_RETURN_IF_ERROR(up(*src, dst));
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::AllocateActivations() {
  const int64_t t = options_.max_num_tokens;
  const ModelConfig& c = config_;
  auto alloc = [&](int64_t rows, int64_t cols, TensorView* out) -> absl::Status {
    TM_ASSIGN_OR_RETURN(*out, backend_->Allocate(DType::kF32, Shape{rows, cols}));
    allocated_.push_back(*out);
    return absl::OkStatus();
  };
  TM_RETURN_IF_ERROR(alloc(t, c.hidden_size, &residual_));
  TM_RETURN_IF_ERROR(alloc(t, c.hidden_size, &normed_));
  TM_RETURN_IF_ERROR(alloc(t, int64_t{c.num_heads} * c.head_dim, &q_));
  TM_RETURN_IF_ERROR(alloc(t, int64_t{c.num_kv_heads} * c.head_dim, &k_));
  TM_RETURN_IF_ERROR(alloc(t, int64_t{c.num_kv_heads} * c.head_dim, &v_));
  TM_RETURN_IF_ERROR(alloc(t, int64_t{c.num_heads} * c.head_dim, &attn_));
  TM_RETURN_IF_ERROR(alloc(t, c.hidden_size, &proj_));
  TM_RETURN_IF_ERROR(alloc(t, c.intermediate_size, &gate_));
  TM_RETURN_IF_ERROR(alloc(t, c.intermediate_size, &up_));
  TM_RETURN_IF_ERROR(alloc(t, c.intermediate_size, &act_));
  TM_RETURN_IF_ERROR(alloc(options_.max_num_logits, c.hidden_size, &logits_in_));
  // A shard's logits buffer has room for the largest vocab slice: the gather sends that
  // many columns from every rank (GatherLogits).
  const int64_t logits_cols =
      is_sharded() ? MaxVocabShardSize(c.vocab_size, c.tp_size) : int64_t{c.vocab_size};
  TM_RETURN_IF_ERROR(alloc(options_.max_num_logits, logits_cols, &logits_));
  if (group_ != nullptr && group_->device_stream() != nullptr) {
    TM_RETURN_IF_ERROR(alloc(int64_t{c.tp_size} * options_.max_num_logits, logits_cols,
                             &gathered_logits_));
  }
  return absl::OkStatus();
}

KvCacheSpec LlamaModel::KvSpec(int num_blocks, int block_size) const {
  KvCacheSpec spec;
  spec.num_layers = config_.num_layers;
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.num_kv_heads = config_.num_kv_heads;
  spec.head_dim = config_.head_dim;
  spec.dtype = DType::kF32;
  return spec;
}

// One decoder layer. On entry residual_ holds the stream and normed_ its attention-normed
// rows; on exit residual_ holds the stream after attention and proj_ the MLP output, which
// the next layer's fused AddRmsNorm (or the final norm) adds in.
absl::Status LlamaModel::RunLayer(int layer, int num_tokens) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[layer];
  Backend& b = *backend_;
  const TensorView x = Rows(normed_, num_tokens);
  const TensorView q = Rows(q_, num_tokens), k = Rows(k_, num_tokens), v = Rows(v_, num_tokens);
  b.MatMul(x, w.wq, OptionalBias(w.bq), q);
  b.MatMul(x, w.wk, OptionalBias(w.bk), k);
  b.MatMul(x, w.wv, OptionalBias(w.bv), v);
  b.Rope(q, k, c.num_heads, c.num_kv_heads, c.rope);
  b.WriteKv(layer, k, v);
  AttentionParams ap;
  ap.num_heads = c.num_heads;
  ap.num_kv_heads = c.num_kv_heads;
  ap.head_dim = c.head_dim;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const TensorView attn = Rows(attn_, num_tokens);
  b.Attention(layer, q, ap, attn);
  const TensorView proj = Rows(proj_, num_tokens);
  b.MatMul(attn, w.wo, nullptr, proj);
  if (comm_ != nullptr) TM_RETURN_IF_ERROR(AllReduce(proj));
  b.AddRmsNorm(Rows(residual_, num_tokens), proj, w.ffn_norm, c.rms_norm_eps, x);
  const TensorView gate = Rows(gate_, num_tokens), up = Rows(up_, num_tokens);
  const TensorView act = Rows(act_, num_tokens);
  b.MatMul(x, w.w_gate, nullptr, gate);
  b.MatMul(x, w.w_up, nullptr, up);
  b.SiluMul(gate, up, act);
  b.MatMul(act, w.w_down, nullptr, proj);
  if (comm_ != nullptr) TM_RETURN_IF_ERROR(AllReduce(proj));
  return absl::OkStatus();
}

absl::Status LlamaModel::AllReduce(const TensorView& t) {
  return backend_->AllReduceSum(*group_, t);
}

// Each rank contributes one slot of rows * max_vocab floats: its [rows, tp_vocab_size]
// logits, contiguous, then slack (vocab slices differ by at most one column), so no rank
// has to pad rows on the device. Rank r's row i then sits at recv[r * slot + i * size_r].
absl::Status LlamaModel::GatherLogits(const TensorView& local, int rows,
                                      std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const int n = c.tp_size;
  const int64_t slot = rows * MaxVocabShardSize(c.vocab_size, n);
  gather_recv_.resize(n * slot);
  if (group_->device_stream() != nullptr) {
    // On the device, then one copy of the gathered slots (which waits for the gather).
    const TensorView send{local.data, DType::kF32, Shape{slot}};
    const TensorView recv{gathered_logits_.data, DType::kF32, Shape{n * slot}};
    TM_RETURN_IF_ERROR(backend_->AllGather(*group_, send, recv));
    backend_->CopyToHost(recv, gather_recv_.data());
  } else {
    gather_send_.resize(slot);
    backend_->CopyToHost(local, gather_send_.data());
    TM_RETURN_IF_ERROR(comm_->AllGather(gather_send_.data(), slot, gather_recv_.data()));
  }
  logits->resize(static_cast<size_t>(rows) * c.vocab_size);
  for (int r = 0; r < n; ++r) {
    const VocabRange v = VocabShard(c.vocab_size, r, n);
    for (int64_t i = 0; i < rows; ++i) {
      std::copy_n(gather_recv_.data() + r * slot + i * v.size, v.size,
                  logits->data() + i * c.vocab_size + v.start);
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::Forward(const BatchPlan& plan, std::vector<float>* logits) {
  const int num_tokens = plan.num_tokens();
  const int num_logits = static_cast<int>(plan.logits_rows.size());
  if (num_tokens < 1 || num_tokens > options_.max_num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("step has ", num_tokens,
                                                   " tokens; the model accepts 1..",
                                                   options_.max_num_tokens));
  }
  if (num_logits > options_.max_num_logits) {
    return absl::InvalidArgumentError(absl::StrCat("step asks for ", num_logits,
                                                   " rows of logits; at most ",
                                                   options_.max_num_logits));
  }
  TM_RETURN_IF_ERROR(backend_->PlanStep(plan));
  const absl::Status run = RunGraph(plan, logits);
  // Finish even after a failed collective: it ends the backend's step either way.
  const absl::Status finish = backend_->Finish();
  return run.ok() ? finish : run;
}

absl::Status LlamaModel::RunGraph(const BatchPlan& plan, std::vector<float>* logits) {
  const int num_tokens = plan.num_tokens();
  const int num_logits = static_cast<int>(plan.logits_rows.size());
  Backend& b = *backend_;
  const ModelConfig& c = config_;
  const TensorView residual = Rows(residual_, num_tokens);
  const TensorView normed = Rows(normed_, num_tokens);
  b.Embedding(tok_embd_, residual);
  b.RmsNorm(residual, layers_[0].attn_norm, c.rms_norm_eps, normed);
  for (int l = 0; l < c.num_layers; ++l) {
    TM_RETURN_IF_ERROR(RunLayer(l, num_tokens));
    const TensorView& next_norm = l + 1 < c.num_layers ? layers_[l + 1].attn_norm : output_norm_;
    b.AddRmsNorm(residual, Rows(proj_, num_tokens), next_norm, c.rms_norm_eps, normed);
  }
  if (num_logits == 0) {
    logits->clear();
    return absl::OkStatus();
  }
  const TensorView rows = Rows(logits_in_, num_logits);
  const int64_t local_vocab = is_sharded() ? c.tp_vocab_size : c.vocab_size;
  const TensorView out{logits_.data, DType::kF32, Shape{num_logits, local_vocab}};
  b.GatherLogitsRows(normed, rows);
  b.MatMul(rows, lm_head_, nullptr, out);
  if (comm_ != nullptr) return GatherLogits(out, num_logits, logits);
  logits->resize(static_cast<size_t>(num_logits) * c.vocab_size);
  b.CopyToHost(out, logits->data());
  return absl::OkStatus();
}

}  // namespace tokenmill
