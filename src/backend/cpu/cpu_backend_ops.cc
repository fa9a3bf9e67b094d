// CpuBackend ops: argument checks (recorded as the sticky error), then the drivers.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "backend/cpu/cpu_backend_impl.h"

namespace tokenmill::cpu {
namespace {

bool IsWeightDType(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kQ8_0;
}

}  // namespace

bool CpuBackend::CheckNormWeight(std::string_view op, const TensorView& weight, int64_t dim) {
  const bool dtype_ok =
      weight.dtype == DType::kF32 || weight.dtype == DType::kF16 || weight.dtype == DType::kBF16;
  return Check(
      weight.data != nullptr && dtype_ok && weight.NumElements() == dim, op,
      absl::StrCat("weight ", std::string(DTypeName(weight.dtype)), weight.shape.ToString(),
                   " must be F32/F16/BF16 with ", dim, " elements"));
}

void CpuBackend::Embedding(const TensorView& table, TensorView out) {
  constexpr std::string_view kOp = "Embedding";
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t dim = table.Cols();
  if (!Check(table.data != nullptr && IsWeightDType(table.dtype), kOp,
             "table must be an F32/F16/BF16/Q8_0 weight") ||
      !CheckF32(kOp, "out", out, plan_.num_tokens(), dim)) {
    return;
  }
  for (int32_t t = 0; t < plan_.num_tokens(); ++t) {
    if (!Check(plan_.token_ids[t] < table.Rows(), kOp,
               absl::StrCat("token_ids[", t, "] = ", plan_.token_ids[t], " outside the table's ",
                            table.Rows(), " rows"))) {
      return;
    }
  }
  EmbeddingRows(ctx_, table.dtype, table.data, dim, plan_.token_ids.data(), plan_.num_tokens(),
                out.As<float>());
}

void CpuBackend::RmsNorm(const TensorView& x, const TensorView& weight, float eps, TensorView out) {
  constexpr std::string_view kOp = "RmsNorm";
  if (!status_.ok()) return;
  if (!CheckF32(kOp, "x", x, -1, -1) || !CheckF32(kOp, "out", out, x.Rows(), x.Cols()) ||
      !CheckNormWeight(kOp, weight, x.Cols())) {
    return;
  }
  RmsNormRows(ctx_, x.As<float>(), nullptr, weight.dtype, weight.data, eps, x.Rows(), x.Cols(),
              out.As<float>());
}

void CpuBackend::AddRmsNorm(TensorView residual, const TensorView& delta, const TensorView& weight,
                            float eps, TensorView out) {
  constexpr std::string_view kOp = "AddRmsNorm";
  if (!status_.ok()) return;
  const int64_t rows = residual.Rows(), cols = residual.Cols();
  if (!CheckF32(kOp, "residual", residual, -1, -1) || !CheckF32(kOp, "delta", delta, rows, cols) ||
      !CheckF32(kOp, "out", out, rows, cols) || !CheckNormWeight(kOp, weight, cols)) {
    return;
  }
  RmsNormRows(ctx_, residual.As<float>(), delta.As<float>(), weight.dtype, weight.data, eps, rows,
              cols, out.As<float>());
}

void CpuBackend::MatMul(const TensorView& x, const TensorView& w, const TensorView* bias,
                        TensorView out) {
  constexpr std::string_view kOp = "MatMul";
  if (!status_.ok()) return;
  const int64_t n = w.Rows(), k = w.Cols();
  if (!Check(w.data != nullptr && IsWeightDType(w.dtype), kOp,
             "w must be an F32/F16/BF16/Q8_0 weight") ||
      !Check(w.dtype != DType::kQ8_0 || k % kQ8_0BlockElems == 0, kOp,
             absl::StrCat("Q8_0 w has rows of ", k, " (not whole blocks)")) ||
      !CheckF32(kOp, "x", x, -1, k) || !CheckF32(kOp, "out", out, x.Rows(), n)) {
    return;
  }
  const bool has_bias = bias != nullptr && bias->data != nullptr;
  if (has_bias && !CheckF32(kOp, "bias", *bias, 1, n)) return;
  if (!Check(out.data != x.data, kOp, "out must not alias x")) return;
  MatMulArgs args{
      x.As<float>(),  x.Rows(), k, w.dtype, w.data, n, has_bias ? bias->As<float>() : nullptr,
      out.As<float>()};
  cpu::MatMul(ctx_, args);
}

void CpuBackend::Rope(TensorView q, TensorView k, int num_heads, int num_kv_heads,
                      const RopeParams& params) {
  constexpr std::string_view kOp = "Rope";
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int hd = params.head_dim;
  const int rotary = params.rotary_dim > 0 ? params.rotary_dim : hd;
  if (!Check(hd > 0 && rotary % 2 == 0 && rotary <= hd && num_heads > 0 && num_kv_heads > 0, kOp,
             absl::StrCat("head_dim ", hd, ", rotary_dim ", rotary, ", heads ", num_heads, "/",
                          num_kv_heads)) ||
      !CheckF32(kOp, "q", q, plan_.num_tokens(), static_cast<int64_t>(num_heads) * hd) ||
      !CheckF32(kOp, "k", k, plan_.num_tokens(), static_cast<int64_t>(num_kv_heads) * hd)) {
    return;
  }
  const float* cos_sin = RopeCosSin(params).data();
  RopeRows(ctx_, q.As<float>(), q.Rows(), num_heads, hd, rotary, params.is_neox, cos_sin);
  RopeRows(ctx_, k.As<float>(), k.Rows(), num_kv_heads, hd, rotary, params.is_neox, cos_sin);
}

void CpuBackend::WriteKv(int layer, const TensorView& k, const TensorView& v) {
  constexpr std::string_view kOp = "WriteKv";
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t width = static_cast<int64_t>(kv_spec_.num_kv_heads) * kv_spec_.head_dim;
  if (!Check(layer >= 0 && layer < kv_spec_.num_layers, kOp,
             absl::StrCat("layer ", layer, " outside [0, ", kv_spec_.num_layers, ")")) ||
      !CheckF32(kOp, "k", k, plan_.num_tokens(), width) ||
      !CheckF32(kOp, "v", v, plan_.num_tokens(), width)) {
    return;
  }
  cpu::WriteKv(ctx_, kv_spec_, meta_, k.As<float>(), v.As<float>(), LayerView(layer));
}

void CpuBackend::Attention(int layer, const TensorView& q, const AttentionParams& params,
                           TensorView out) {
  constexpr std::string_view kOp = "Attention";
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t width = static_cast<int64_t>(params.num_heads) * params.head_dim;
  if (!Check(layer >= 0 && layer < kv_spec_.num_layers, kOp,
             absl::StrCat("layer ", layer, " outside [0, ", kv_spec_.num_layers, ")")) ||
      !Check(
          params.num_kv_heads == kv_spec_.num_kv_heads && params.head_dim == kv_spec_.head_dim &&
              params.num_heads > 0 && params.num_heads % params.num_kv_heads == 0 &&
              params.sliding_window >= 0,
          kOp,
          absl::StrCat("heads ", params.num_heads, "/", params.num_kv_heads, " x ", params.head_dim,
                       " (sliding_window ", params.sliding_window, ") do not fit the KV cache's ",
                       kv_spec_.num_kv_heads, " x ", kv_spec_.head_dim)) ||
      !CheckF32(kOp, "q", q, plan_.num_tokens(), width) ||
      !CheckF32(kOp, "out", out, plan_.num_tokens(), width)) {
    return;
  }
  PagedAttention(ctx_, plan_, kv_spec_, LayerView(layer), q.As<float>(), params, out.As<float>());
}

void CpuBackend::SiluMul(const TensorView& gate, const TensorView& up, TensorView out) {
  constexpr std::string_view kOp = "SiluMul";
  if (!status_.ok()) return;
  if (!CheckF32(kOp, "gate", gate, -1, -1) || !CheckF32(kOp, "up", up, gate.Rows(), gate.Cols()) ||
      !CheckF32(kOp, "out", out, gate.Rows(), gate.Cols())) {
    return;
  }
  SiluMulRows(ctx_, gate.As<float>(), up.As<float>(), gate.NumElements(), out.As<float>());
}

void CpuBackend::GatherLogitsRows(const TensorView& x, TensorView out) {
  constexpr std::string_view kOp = "GatherLogitsRows";
  if (!status_.ok() || !CheckPlan(kOp)) return;
  const int64_t rows = static_cast<int64_t>(plan_.logits_rows.size());
  if (!CheckF32(kOp, "x", x, plan_.num_tokens(), -1) ||
      !CheckF32(kOp, "out", out, rows, x.Cols())) {
    return;
  }
  const int64_t cols = x.Cols();
  for (int64_t i = 0; i < rows; ++i) {
    std::memmove(out.As<float>() + i * cols, x.As<float>() + plan_.logits_rows[i] * cols,
                 cols * sizeof(float));
  }
}

}  // namespace tokenmill::cpu
