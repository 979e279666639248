// cuBLASLt-backed matrix products (see gemm.h).
//
// Row-major out[M,N] = x[M,K] W[N,K]^T is computed as the column-major product
// out^T[N,M] = W^T'[N,K] x^T[K,M], i.e. A = W (op T, stored K x N column-major), B = x (op N,
// stored K x M column-major), C = D = out (N x M column-major).
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <tuple>
#include <utility>

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

// What a plan depends on besides the shape: operand types and the strided batch.
struct PlanKind {
  bool tf32 = false;  // f32 operands with TF32 multiplies (else bf16 operands)
  DType out_type = DType::kF32;
  int batch = 1;
  int64_t x_stride = 0, w_stride = 0, out_stride = 0;
};

struct Gemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  // (M, N, K, ldx, ldw, ldo, tf32, out_type, batch, x_stride, w_stride, out_stride)
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, int,
                         int64_t, int64_t, int64_t>;
  std::map<Key, Plan> plans;

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

  // One product with the plan of its shape and kind (planned on first use).
  absl::Status Matmul(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* w,
                      int64_t ldw, void* out, int64_t ldo, const PlanKind& kind, float alpha,
                      float beta, cudaStream_t stream);

  absl::StatusOr<const Plan*> GetPlan(int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldw,
                                      int64_t ldo, const PlanKind& k) {
    const Key key{M, N, K, ldx, ldw, ldo, k.tf32, static_cast<int>(k.out_type), k.batch,
                  k.x_stride, k.w_stride, k.out_stride};
    auto it = plans.find(key);
    if (it != plans.end()) return &it->second;
    Plan p;
    LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(
        &p.op, k.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    const cudaDataType_t in_t = k.tf32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t ct = k.out_type == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
    LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.a, in_t, K, N, ldw));
    LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.b, in_t, K, M, ldx));
    LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.c, ct, N, M, ldo));
    if (k.batch > 1) {
      const int32_t count = k.batch;
      for (auto [layout, stride] : {std::pair{p.a, k.w_stride}, std::pair{p.b, k.x_stride},
                                    std::pair{p.c, k.out_stride}}) {
        LT_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
            layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
        LT_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
            layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
      }
    }
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

namespace {

// The checks both entry points make; `what` names the entry point in the message.
absl::Status CheckOperands(const char* what, int64_t M, int64_t N, int64_t K, const void* x,
                           int64_t ldx, const void* w, int64_t ldw, const void* out,
                           int64_t ldo) {
  if (M < 0 || N <= 0 || K <= 0)
    return absl::InvalidArgumentError(absl::StrCat(what, ": bad shape M=", M, " N=", N, " K=", K));
  if (ldx < K || ldw < K || ldo < N)
    return absl::InvalidArgumentError(absl::StrCat(what, ": strides ldx=", ldx, " ldw=", ldw,
                                                   " ldo=", ldo, " below K=", K, " / N=", N));
  if (x == nullptr || w == nullptr || out == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(what, ": null operand"));
  return absl::OkStatus();
}

}  // namespace

absl::Status Gemm::Impl::Matmul(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx,
                                const void* w, int64_t ldw, void* out, int64_t ldo,
                                const PlanKind& kind, float alpha, float beta,
                                cudaStream_t stream) {
  auto plan = GetPlan(M, N, K, ldx, ldw, ldo, kind);
  if (!plan.ok()) return plan.status();
  const Plan* p = *plan;
  LT_RETURN_IF_ERROR(cublasLtMatmul(handle, p->op, &alpha, w, p->a, x, p->b, &beta, out, p->c,
                                    out, p->c, &p->algo, workspace, kWorkspaceBytes, stream));
  return absl::OkStatus();
}

absl::Status Gemm::Run(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx,
                       const void* w, int64_t ldw, void* out, int64_t ldo, DType out_type,
                       float beta, cudaStream_t stream, float alpha) {
  if (M == 0) return absl::OkStatus();
  if (absl::Status s = CheckOperands("gemm", M, N, K, x, ldx, w, ldw, out, ldo); !s.ok())
    return s;
  PlanKind kind;
  kind.out_type = out_type;
  return impl_->Matmul(M, N, K, x, ldx, w, ldw, out, ldo, kind, alpha, beta, stream);
}

absl::Status Gemm::RunTf32Batched(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
                                  int64_t x_stride, const float* w, int64_t ldw,
                                  int64_t w_stride, float* out, int64_t ldo, int64_t out_stride,
                                  int batch, cudaStream_t stream) {
  if (M == 0) return absl::OkStatus();
  if (absl::Status s = CheckOperands("gemm tf32", M, N, K, x, ldx, w, ldw, out, ldo); !s.ok())
    return s;
  if (batch < 1) return absl::InvalidArgumentError(absl::StrCat("gemm tf32: batch=", batch));
  for (int64_t v : {ldx, ldw, ldo, x_stride, w_stride, out_stride}) {
    if (v % 4 != 0)
      return absl::InvalidArgumentError("gemm tf32: strides must be multiples of 4 elements");
  }
  if (!IsAligned(x, 16) || !IsAligned(w, 16) || !IsAligned(out, 16))
    return absl::InvalidArgumentError("gemm tf32: operands must be 16-byte aligned");
  PlanKind kind;
  kind.tf32 = true;
  kind.batch = batch;
  if (batch > 1) {
    kind.x_stride = x_stride;
    kind.w_stride = w_stride;
    kind.out_stride = out_stride;
  }
  return impl_->Matmul(M, N, K, x, ldx, w, ldw, out, ldo, kind, 1.0f, 0.0f, stream);
}

}  // namespace deltaserve::cuda
