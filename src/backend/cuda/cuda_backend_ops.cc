// CudaBackend ops: host-side argument checks (recorded as the sticky error), then a
// launch function for Launch(). Launch functions read step metadata and scratch pointers
// when they run, never when recorded: those may move between the two.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/rope_kv.h"

namespace tokenmill::cuda {
namespace {

bool IsDeviceWeightDType(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16;
}

cudaDataType_t CudaType(DType d) {
  switch (d) {
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kBF16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

}  // namespace

void CudaBackend::Embedding(const TensorView& table, TensorView out) {
  constexpr std::string_view kOp = "Embedding";
  FlushRope();
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t vocab = table.Rows(), dim = table.Cols();
  if (!Check(table.data != nullptr && IsDeviceWeightDType(table.dtype) &&
                 allocator_.BytesAvailable(table.data) >= table.NumBytes(),
             kOp, "table must be a weight returned by UploadWeight") ||
      !CheckActivation(kOp, "out", out, plan_.num_tokens(), dim)) {
    return;
  }
  for (int32_t t = 0; t < plan_.num_tokens(); ++t) {
    if (!Check(plan_.token_ids[t] < vocab, kOp,
               absl::StrCat("token_ids[", t, "] = ", plan_.token_ids[t], " outside the table's ",
                            vocab, " rows"))) {
      return;
    }
  }
  KeyBuilder key;
  key.Add(kOp).Add(table.data, table.dtype, vocab, dim, out.data, out.dtype);
  Launch(key, out.Rows(), {&out}, [=, this](cudaStream_t s, int64_t rows) {
    return TM_CUDA_STATUS(kernels::LaunchEmbedding(table.data, ToScalar(table.dtype), vocab, dim,
                                                   steps_->token_ids(), rows, out.data,
                                                   ToScalar(out.dtype), s));
  });
}

void CudaBackend::RmsNorm(const TensorView& x, const TensorView& weight, float eps,
                          TensorView out) {
  constexpr std::string_view kOp = "RmsNorm";
  FlushRope();
  if (!status_.ok()) return;
  if (!CheckActivation(kOp, "x", x, -1, -1) ||
      !CheckActivation(kOp, "out", out, x.Rows(), x.Cols()) || !CheckSameDType(kOp, {&x, &out}) ||
      !CheckVector(kOp, "weight", weight, x.Cols())) {
    return;
  }
  const int64_t cols = x.Cols();
  KeyBuilder key;
  key.Add(kOp).Add(x.data, out.data, weight.data, x.dtype, cols, eps);
  Launch(key, x.Rows(), {&x, &out}, [=](cudaStream_t s, int64_t rows) {
    return TM_CUDA_STATUS(kernels::LaunchRmsNorm(x.data, weight.As<float>(), out.data,
                                                 ToScalar(x.dtype), rows, cols, eps, s));
  });
}

void CudaBackend::AddRmsNorm(TensorView residual, const TensorView& delta,
                             const TensorView& weight, float eps, TensorView out) {
  constexpr std::string_view kOp = "AddRmsNorm";
  FlushRope();
  if (!status_.ok()) return;
  const int64_t rows = residual.Rows(), cols = residual.Cols();
  if (!CheckActivation(kOp, "residual", residual, -1, -1) ||
      !CheckActivation(kOp, "delta", delta, rows, cols) ||
      !CheckActivation(kOp, "out", out, rows, cols) ||
      !CheckSameDType(kOp, {&residual, &delta, &out}) ||
      !CheckVector(kOp, "weight", weight, cols) ||
      !Check(out.data != residual.data && out.data != delta.data, kOp,
             "out must not alias residual or delta")) {
    return;
  }
  KeyBuilder key;
  key.Add(kOp).Add(residual.data, delta.data, out.data, weight.data, residual.dtype, cols, eps);
  Launch(key, rows, {&residual, &delta, &out}, [=](cudaStream_t s, int64_t n) {
    return TM_CUDA_STATUS(kernels::LaunchAddRmsNorm(residual.data, delta.data,
                                                    weight.As<float>(), out.data,
                                                    ToScalar(residual.dtype), n, cols, eps, s));
  });
}

void CudaBackend::MatMul(const TensorView& x, const TensorView& w, const TensorView* bias,
                         TensorView out) {
  constexpr std::string_view kOp = "MatMul";
  FlushRope();
  if (!status_.ok()) return;
  const int64_t n = w.Rows(), k = w.Cols();
  if (!Check(w.data != nullptr && IsDeviceWeightDType(w.dtype) &&
                 allocator_.BytesAvailable(w.data) >= w.NumBytes(),
             kOp, "w must be a weight returned by UploadWeight") ||
      !CheckActivation(kOp, "x", x, -1, k) || !CheckActivation(kOp, "out", out, x.Rows(), n) ||
      !Check(out.data != x.data, kOp, "out must not alias x")) {
    return;
  }
  const bool has_bias = bias != nullptr && bias->data != nullptr;
  if (has_bias && !CheckVector(kOp, "bias", *bias, n)) return;
  // Operands in the weight's dtype; the output directly when cuBLASLt supports the
  // combination (fp32 out always; bf16 out with bf16 weights), else via fp32 scratch.
  const DType compute = w.dtype;
  const bool convert_in = x.dtype != compute;
  const bool via_scratch = out.dtype != DType::kF32 && out.dtype != compute;
  const int64_t max_rows = std::max<int64_t>(x.Rows(), graphs_->recording() ? graphs_->padded_rows() : 0);
  absl::Status s = absl::OkStatus();
  if (convert_in) s = ReserveScratch(gemm_in_, DTypeBytes(compute, max_rows * k));
  if (s.ok() && via_scratch) s = ReserveScratch(gemm_out_, DTypeBytes(DType::kF32, max_rows * n));
  if (!s.ok()) return Fail(s);
  const float* bias_ptr = has_bias ? bias->As<float>() : nullptr;
  const bool tf32 = options_.allow_tf32;
  KeyBuilder key;
  key.Add(kOp).Add(x.data, x.dtype, w.data, w.dtype, out.data, out.dtype, bias_ptr, n, k);
  Launch(key, x.Rows(), {&x, &out}, [=, this](cudaStream_t st, int64_t rows) -> absl::Status {
    const void* xin = x.data;
    if (convert_in) {
      TM_CUDA_RETURN_IF_ERROR(kernels::LaunchConvert(x.data, ToScalar(x.dtype), gemm_in_.data(),
                                                     ToScalar(compute), rows * k, st));
      xin = gemm_in_.data();
    }
    GemmArgs args;
    args.w = w.data;
    args.w_type = CudaType(compute);
    args.x = xin;
    args.out = via_scratch ? gemm_out_.data() : out.data;
    args.out_type = via_scratch ? CUDA_R_32F : CudaType(out.dtype);
    args.bias = bias_ptr;
    args.m = rows;
    args.n = n;
    args.k = k;
    args.allow_tf32 = tf32;
    TM_RETURN_IF_ERROR(gemm_->Run(args, st));
    if (via_scratch) {
      TM_CUDA_RETURN_IF_ERROR(kernels::LaunchConvert(gemm_out_.data(), kernels::ScalarType::kF32,
                                                     out.data, ToScalar(out.dtype), rows * n, st));
    }
    return absl::OkStatus();
  });
}

void CudaBackend::Rope(TensorView q, TensorView k, int num_heads, int num_kv_heads,
                       const RopeParams& params) {
  constexpr std::string_view kOp = "Rope";
  FlushRope();
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int hd = params.head_dim;
  const int rotary = params.rotary_dim > 0 ? params.rotary_dim : hd;
  if (!Check(hd > 0 && hd <= 1024 && rotary % 2 == 0 && rotary <= hd && num_heads > 0 &&
                 num_kv_heads > 0,
             kOp,
             absl::StrCat("head_dim ", hd, ", rotary_dim ", rotary, ", heads ", num_heads, "/",
                          num_kv_heads)) ||
      !CheckActivation(kOp, "q", q, plan_.num_tokens(), static_cast<int64_t>(num_heads) * hd) ||
      !CheckActivation(kOp, "k", k, plan_.num_tokens(), static_cast<int64_t>(num_kv_heads) * hd) ||
      !CheckSameDType(kOp, {&q, &k})) {
    return;
  }
  absl::StatusOr<const float*> inv_freq = InverseFrequencies(params);
  if (!inv_freq.ok()) return Fail(inv_freq.status());
  pending_rope_ = PendingRope{q, k, num_heads, num_kv_heads, hd, rotary, params.is_neox, *inv_freq};
}

void CudaBackend::WriteKv(int layer, const TensorView& k, const TensorView& v) {
  constexpr std::string_view kOp = "WriteKv";
  if (!status_.ok() || !CheckPlan(kOp)) return FlushRope();
  const int64_t width = static_cast<int64_t>(kv_spec_.num_kv_heads) * kv_spec_.head_dim;
  if (!Check(layer >= 0 && layer < kv_spec_.num_layers, kOp,
             absl::StrCat("layer ", layer, " outside [0, ", kv_spec_.num_layers, ")")) ||
      !CheckActivation(kOp, "k", k, plan_.num_tokens(), width) ||
      !CheckActivation(kOp, "v", v, plan_.num_tokens(), width) ||
      !CheckSameDType(kOp, {&k, &v})) {
    return FlushRope();
  }
  if (pending_rope_ && pending_rope_->k.data == k.data && pending_rope_->k.dtype == k.dtype &&
      pending_rope_->num_kv_heads == kv_spec_.num_kv_heads &&
      pending_rope_->head_dim == kv_spec_.head_dim) {
    const PendingRope rope = *pending_rope_;
    pending_rope_.reset();
    EnqueueRopeKv(&rope, layer, &k, &v);
    return;
  }
  FlushRope();
  EnqueueRopeKv(nullptr, layer, &k, &v);
}

void CudaBackend::FlushRope() {
  if (!pending_rope_) return;
  const PendingRope rope = *pending_rope_;
  pending_rope_.reset();
  EnqueueRopeKv(&rope, -1, &rope.k, nullptr);
}

// One RopeKv launch: rotation (rope != null) and/or the cache write (layer >= 0).
void CudaBackend::EnqueueRopeKv(const PendingRope* rope, int layer, const TensorView* k,
                                const TensorView* v) {
  kernels::RopeKvArgs a;
  a.act_type = ToScalar(k->dtype);
  a.k = k->data;
  a.num_kv_heads = rope != nullptr ? rope->num_kv_heads : kv_spec_.num_kv_heads;
  a.head_dim = rope != nullptr ? rope->head_dim : kv_spec_.head_dim;
  if (rope != nullptr) {
    a.q = rope->q.data;
    a.num_heads = rope->num_heads;
    a.rotate_q = a.rotate_k = true;
    a.inv_freq = rope->inv_freq;
    a.rotary_dim = rope->rotary_dim;
    a.is_neox = rope->is_neox;
  }
  if (layer >= 0) {
    uint8_t* base = static_cast<uint8_t*>(kv_base_) + 2 * static_cast<size_t>(layer) * kv_layer_bytes_;
    a.k_cache = base;
    a.v_cache = base + kv_layer_bytes_;
    a.cache_type = ToScalar(kv_spec_.dtype);
    a.v = v->data;
  }
  KeyBuilder key;
  key.Add("RopeKv").Add(a.q, a.k, a.v, a.k_cache, a.num_heads, a.num_kv_heads, a.head_dim,
                        a.rotary_dim, a.is_neox, a.inv_freq, a.act_type, a.cache_type);
  const TensorView q = rope != nullptr ? rope->q : *k;
  const TensorView vv = v != nullptr ? *v : *k;
  Launch(key, k->Rows(), {&q, k, &vv}, [a, this](cudaStream_t s, int64_t rows) mutable {
    a.num_tokens = rows;
    a.positions = steps_->positions();
    a.slot_mapping = steps_->slot_mapping();
    return TM_CUDA_STATUS(kernels::LaunchRopeKv(a, s));
  });
}

int CudaBackend::DecodeSplits(int num_kv_heads) const {
  return kernels::ChooseDecodeSplits(steps_->num_decode(), num_kv_heads,
                                     steps_->max_decode_context(), props_.multiProcessorCount);
}

void CudaBackend::Attention(int layer, const TensorView& q, const AttentionParams& params,
                            TensorView out) {
  constexpr std::string_view kOp = "Attention";
  FlushRope();
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t width = static_cast<int64_t>(params.num_heads) * params.head_dim;
  if (!Check(layer >= 0 && layer < kv_spec_.num_layers, kOp,
             absl::StrCat("layer ", layer, " outside [0, ", kv_spec_.num_layers, ")")) ||
      !Check(params.num_kv_heads == kv_spec_.num_kv_heads &&
                 params.head_dim == kv_spec_.head_dim && params.num_heads > 0 &&
                 params.num_heads % params.num_kv_heads == 0 && params.sliding_window >= 0,
             kOp,
             absl::StrCat("heads ", params.num_heads, "/", params.num_kv_heads, " x ",
                          params.head_dim, " (sliding_window ", params.sliding_window,
                          ") do not fit the KV cache's ", kv_spec_.num_kv_heads, " x ",
                          kv_spec_.head_dim)) ||
      !CheckActivation(kOp, "q", q, plan_.num_tokens(), width) ||
      !CheckActivation(kOp, "out", out, plan_.num_tokens(), width) ||
      !CheckSameDType(kOp, {&q, &out})) {
    return;
  }
  kernels::AttentionArgs a;
  a.q = q.data;
  a.out = out.data;
  a.act_type = ToScalar(q.dtype);
  a.num_heads = params.num_heads;
  a.num_kv_heads = params.num_kv_heads;
  a.head_dim = params.head_dim;
  a.scale = params.scale;
  a.sliding_window = params.sliding_window;
  const uint8_t* base = static_cast<const uint8_t*>(kv_base_) + 2 * static_cast<size_t>(layer) * kv_layer_bytes_;
  a.kv.k_cache = base;
  a.kv.v_cache = base + kv_layer_bytes_;
  a.kv.type = ToScalar(kv_spec_.dtype);
  a.kv.block_size = kv_spec_.block_size;
  const bool decode_fast = options_.use_fast_attention && kernels::DecodeAttentionFastPath(a);
  const bool prefill_fast = options_.use_fast_attention && kernels::PrefillAttentionFastPath(a);
  const int num_decode = steps_->num_decode(), num_prefill = steps_->num_prefill();
  // A step uploaded padded to a graph bucket is decode-only with the real sequences
  // first: launched with `rows` rows (bucket or real), it has exactly `rows` to attend.
  const bool padded = steps_->num_seqs() > static_cast<int>(plan_.sequences.size());
  const int max_prefill_q = steps_->max_prefill_query_len();
  const int splits = decode_fast ? DecodeSplits(params.num_kv_heads) : 1;
  if (decode_fast && splits > 1) {
    const absl::Status s = ReserveScratch(
        attn_ws_, kernels::DecodeAttentionWorkspaceBytes(num_decode, params.num_heads,
                                                         params.head_dim, splits));
    if (!s.ok()) return Fail(s);
  }
  KeyBuilder key;
  key.Add(kOp).Add(a.q, a.out, a.act_type, a.num_heads, a.num_kv_heads, a.head_dim, a.scale,
                   a.sliding_window, a.kv.k_cache, a.kv.type, a.kv.block_size, num_decode,
                   num_prefill, max_prefill_q, splits, decode_fast, prefill_fast);
  Launch(key, q.Rows(), {&q, &out}, [=, this](cudaStream_t s, int64_t rows) mutable -> absl::Status {
    a.kv.block_tables = steps_->block_tables();
    a.kv.block_table_stride = steps_->block_table_stride();
    a.batch.query_start = steps_->query_start();
    a.batch.num_query = steps_->num_query();
    a.batch.context_len = steps_->context_len();
    if (num_decode > 0) {
      a.batch.seq_ids = steps_->decode_ids();
      a.batch.num_selected = padded ? static_cast<int>(rows) : num_decode;
      a.batch.max_query_len = 1;
      TM_CUDA_RETURN_IF_ERROR(
          decode_fast ? kernels::LaunchPagedDecodeAttention(a, splits, attn_ws_.data(), s)
                      : kernels::LaunchPagedAttentionGeneric(a, s));
    }
    if (num_prefill > 0) {
      a.batch.seq_ids = steps_->prefill_ids();
      a.batch.num_selected = num_prefill;
      a.batch.max_query_len = max_prefill_q;
      TM_CUDA_RETURN_IF_ERROR(prefill_fast ? kernels::LaunchPagedPrefillAttention(a, s)
                                           : kernels::LaunchPagedAttentionGeneric(a, s));
    }
    return absl::OkStatus();
  });
}

void CudaBackend::SiluMul(const TensorView& gate, const TensorView& up, TensorView out) {
  constexpr std::string_view kOp = "SiluMul";
  FlushRope();
  if (!status_.ok()) return;
  if (!CheckActivation(kOp, "gate", gate, -1, -1) ||
      !CheckActivation(kOp, "up", up, gate.Rows(), gate.Cols()) ||
      !CheckActivation(kOp, "out", out, gate.Rows(), gate.Cols()) ||
      !CheckSameDType(kOp, {&gate, &up, &out})) {
    return;
  }
  const int64_t cols = gate.Cols();
  KeyBuilder key;
  key.Add(kOp).Add(gate.data, up.data, out.data, gate.dtype, cols);
  Launch(key, gate.Rows(), {&gate, &up, &out}, [=](cudaStream_t s, int64_t rows) {
    return TM_CUDA_STATUS(kernels::LaunchSiluMul(gate.data, up.data, out.data,
                                                 ToScalar(gate.dtype), rows * cols, s));
  });
}

void CudaBackend::GatherLogitsRows(const TensorView& x, TensorView out) {
  constexpr std::string_view kOp = "GatherLogitsRows";
  FlushRope();
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t rows = static_cast<int64_t>(plan_.logits_rows.size());
  if (!CheckActivation(kOp, "x", x, plan_.num_tokens(), -1) ||
      !CheckActivation(kOp, "out", out, rows, x.Cols()) || !CheckSameDType(kOp, {&x, &out})) {
    return;
  }
  const int64_t row_bytes = DTypeBytes(x.dtype, x.Cols());
  KeyBuilder key;
  key.Add(kOp).Add(x.data, out.data, row_bytes);
  Launch(key, rows, {&out}, [=, this](cudaStream_t s, int64_t n) {
    return TM_CUDA_STATUS(
        kernels::LaunchGatherRows(x.data, row_bytes, steps_->logits_rows(), n, out.data, s));
  });
}

}  // namespace tokenmill::cuda
