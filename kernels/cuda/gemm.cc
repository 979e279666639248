// cuBLASLt-backed bf16 matrix products (see gemm.h).
//
// Row-major out[M,N] = x[M,K] W[N,K]^T is computed as the column-major product
// out^T[N,M] = W^T'[N,K] x^T[K,M], i.e. A = W (op T, stored K x N column-major), B = x (op N,
// stored K x M column-major), C = D = out (N x M column-major).
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;

absl::Status LtStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLASLt status ", static_cast<int>(s)));
}

#define LT_RETURN_IF_ERROR(expr)                             \
  do {                                                       \
    cublasStatus_t lt_s_ = (expr);                           \
    if (lt_s_ != CUBLAS_STATUS_SUCCESS) return LtStatus(lt_s_, #expr); \
  } while (0)

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
};

}  // namespace

struct Gemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  // (M, N, K, ldx, ldw, ldo, out_type)
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>, Plan> plans;

  ~Impl() {
    for (auto& [key, p] : plans) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
    }
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) cublasLtDestroy(handle);
  }

  absl::StatusOr<const Plan*> GetPlan(int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldw,
                                      int64_t ldo, DType out_type) {
    auto key = std::make_tuple(M, N, K, ldx, ldw, ldo, static_cast<int>(out_type));
    auto it = plans.find(key);
    if (it != plans.end()) return &it->second;
    Plan p;
    LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    const cudaDataType_t ct = out_type == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
    LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, K, N, ldw));
    LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, K, M, ldx));
    LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.c, ct, N, M, ldo));
    cublasLtMatmulPreference_t pref;
    LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = kWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1,
                                                       &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      return absl::InternalError(absl::StrCat("gemm: no cuBLASLt algorithm for M=", M, " N=", N,
                                              " K=", K, " (status ", static_cast<int>(hs), ")"));
    }
    p.algo = result.algo;
    return &plans.emplace(key, p).first->second;
  }
};

Gemm::Gemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gemm::~Gemm() = default;

absl::StatusOr<std::unique_ptr<Gemm>> Gemm::Create() {
  auto impl = std::make_unique<Impl>();
  LT_RETURN_IF_ERROR(cublasLtCreate(&impl->handle));
  DS_CUDA_RETURN_IF_ERROR(cudaMalloc(&impl->workspace, kWorkspaceBytes));
  return std::unique_ptr<Gemm>(new Gemm(std::move(impl)));
}

absl::Status Gemm::Run(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx,
                       const void* w, int64_t ldw, void* out, int64_t ldo, DType out_type,
                       float beta, cudaStream_t stream, float alpha) {
  if (M == 0) return absl::OkStatus();
  if (M < 0 || N <= 0 || K <= 0)
    return absl::InvalidArgumentError(absl::StrCat("gemm: bad shape M=", M, " N=", N, " K=", K));
  if (ldx < K || ldw < K || ldo < N)
    return absl::InvalidArgumentError(absl::StrCat("gemm: strides ldx=", ldx, " ldw=", ldw,
                                                   " ldo=", ldo, " below K=", K, " / N=", N));
  if (x == nullptr || w == nullptr || out == nullptr)
    return absl::InvalidArgumentError("gemm: null operand");
  auto plan = impl_->GetPlan(M, N, K, ldx, ldw, ldo, out_type);
  if (!plan.ok()) return plan.status();
  const Plan* p = *plan;
  LT_RETURN_IF_ERROR(cublasLtMatmul(impl_->handle, p->op, &alpha, w, p->a, x, p->b, &beta, out,
                                    p->c, out, p->c, &p->algo, impl_->workspace, kWorkspaceBytes,
                                    stream));
  return absl::OkStatus();
}

}  // namespace deltaserve::cuda
