#include "backend/cuda/gemm.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend/cuda/cuda_check.h"
#include "kernels/elementwise.h"
#include "tokenmill/core/status.h"

namespace tokenmill::cuda {

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;      // false: the heuristic found nothing; use cublasGemmEx
  bool bias_epilogue = false;

  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

// Largest power of two (<= 256) dividing the address: what cuBLASLt calls alignment.
uint32_t AlignmentOf(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && addr % a != 0) a /= 2;
  return a;
}

cublasComputeType_t ComputeType(const GemmArgs& args) {
  if (args.w_type != CUDA_R_32F) return CUBLAS_COMPUTE_32F;
  return args.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

std::string PlanKey(const GemmArgs& a) {
  return absl::StrCat(a.m, ",", a.n, ",", a.k, ",", static_cast<int>(a.w_type), ",",
                      static_cast<int>(a.out_type), ",", a.allow_tf32, ",", a.bias != nullptr,
                      ",", AlignmentOf(a.w), ",", AlignmentOf(a.x), ",", AlignmentOf(a.out));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(DeviceAllocator* allocator,
                                                                   size_t workspace_bytes) {
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  g->allocator_ = allocator;
  TM_CUDA_RETURN_IF_ERROR(cublasLtCreate(&g->lt_));
  TM_CUDA_RETURN_IF_ERROR(cublasCreate(&g->blas_));
  g->workspace_bytes_ = std::max<size_t>(workspace_bytes, 1 << 20);
  TM_ASSIGN_OR_RETURN(g->workspace_, allocator->Allocate(g->workspace_bytes_, MemoryKind::kWorkspace));
  // The fallback path must not allocate either (graph capture).
  TM_CUDA_RETURN_IF_ERROR(cublasSetWorkspace(g->blas_, g->workspace_, g->workspace_bytes_));
  TM_CUDA_RETURN_IF_ERROR(cublasSetMathMode(g->blas_, CUBLAS_DEFAULT_MATH));
  return g;
}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (lt_ != nullptr) cublasLtDestroy(lt_);
  if (workspace_ != nullptr) (void)allocator_->Free(workspace_);
}

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(const GemmArgs& args) {
  const std::string key = PlanKey(args);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  auto plan = std::make_unique<Plan>();
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, ComputeType(args), CUDA_R_32F));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  // cuBLASLt's bias has D's type, so the epilogue only serves fp32 outputs.
  plan->bias_epilogue = args.bias != nullptr && args.out_type == CUDA_R_32F;
  if (plan->bias_epilogue) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &args.bias, sizeof(args.bias)));
  }
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, args.w_type, args.k, args.n, args.k));
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, args.w_type, args.k, args.m, args.k));
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, args.out_type, args.n, args.m, args.n));

  cublasLtMatmulPreference_t pref = nullptr;
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const uint32_t align_a = AlignmentOf(args.w), align_b = AlignmentOf(args.x),
                 align_d = AlignmentOf(args.out);
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof(workspace_bytes_));
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                              &align_a, sizeof(align_a));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                              &align_b, sizeof(align_b));
  }
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align_d, sizeof(align_d));
    }
  }
  cublasLtMatmulHeuristicResult_t result{};
  int num_results = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    // A shape no algorithm supports is not an error here: cublasGemmEx takes it.
    if (cublasLtMatmulAlgoGetHeuristic(lt_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref,
                                       1, &result, &num_results) != CUBLAS_STATUS_SUCCESS) {
      num_results = 0;
    }
  }
  cublasLtMatmulPreferenceDestroy(pref);
  TM_CUDA_RETURN_IF_ERROR(st);
  plan->has_algo = num_results > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan->has_algo) plan->algo = result.algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

absl::Status CublasLtGemm::Run(const GemmArgs& args, cudaStream_t stream) {
  if (args.m <= 0 || args.n <= 0) return absl::OkStatus();
  TM_ASSIGN_OR_RETURN(Plan * plan, GetPlan(args));
  const float alpha = 1.0f, beta = 0.0f;
  if (!plan->has_algo) return RunFallback(args, stream);
  if (plan->bias_epilogue) {
    TM_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &args.bias, sizeof(args.bias)));
  }
  TM_CUDA_RETURN_IF_ERROR(cublasLtMatmul(lt_, plan->desc, &alpha, args.w, plan->a, args.x,
                                         plan->b, &beta, args.out, plan->d, args.out, plan->d,
                                         &plan->algo, workspace_, workspace_bytes_, stream));
  if (args.bias != nullptr && !plan->bias_epilogue) {
    const auto type = args.out_type == CUDA_R_16BF ? kernels::ScalarType::kBF16
                                                   : kernels::ScalarType::kF16;
    TM_CUDA_RETURN_IF_ERROR(
        kernels::LaunchAddBias(args.out, type, args.bias, args.m, args.n, stream));
  }
  return absl::OkStatus();
}

absl::Status CublasLtGemm::RunFallback(const GemmArgs& args, cudaStream_t stream) {
  const float alpha = 1.0f, beta = 0.0f;
  TM_CUDA_RETURN_IF_ERROR(cublasSetStream(blas_, stream));
  TM_CUDA_RETURN_IF_ERROR(cublasGemmEx(
      blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(args.n), static_cast<int>(args.m),
      static_cast<int>(args.k), &alpha, args.w, args.w_type, static_cast<int>(args.k), args.x,
      args.w_type, static_cast<int>(args.k), &beta, args.out, args.out_type,
      static_cast<int>(args.n), ComputeType(args), CUBLAS_GEMM_DEFAULT));
  if (args.bias != nullptr) {
    kernels::ScalarType type = kernels::ScalarType::kF32;
    if (args.out_type == CUDA_R_16BF) type = kernels::ScalarType::kBF16;
    if (args.out_type == CUDA_R_16F) type = kernels::ScalarType::kF16;
    TM_CUDA_RETURN_IF_ERROR(kernels::LaunchAddBias(args.out, type, args.bias, args.m, args.n, stream));
  }
  return absl::OkStatus();
}

}  // namespace tokenmill::cuda
