// Benchmark of the cuBLASLt algorithm space for the decode step's products: for each of
// gdn2_1.3B's four per-layer products at batch 64 and 256 (the shapes, strides, output type and
// beta the CUDA runner uses), the algorithm cuBLASLt's heuristic picks (what kernels/cuda/gemm.cc
// runs) against every configuration cuBLASLt accepts: algorithm id x tile x stages x split-k
// (with each reduction scheme) x CTA swizzle. Weights rotate over enough copies that every run
// reads them from DRAM, as in a decode step. Screening: 10 runs per configuration; the eight
// fastest and the heuristic's pick are then timed again (median of 5 x 40 runs), and the best
// is the fastest of those.
//
// Usage: gemm_algo_bench [out.json] [--quick]   (--quick: batch 256 only)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bench/cuda/bench_util.h"

using namespace deltaserve::bench;

namespace {

#define LT_CHECK(expr)                                                                  \
  do {                                                                                \
    cublasStatus_t s_ = (expr);                                                       \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
      std::fprintf(stderr, "%s:%d %s: status %d\n", __FILE__, __LINE__, #expr, (int)s_); \
      std::exit(2);                                                                   \
    }                                                                                 \
  } while (0)

constexpr size_t kWorkspaceBytes = 32u << 20;

struct Case {
  const char* name;
  int64_t M, N, K, ldx, ldo;
  float beta;
};

struct Config {
  int id = -1, tile = 0, stages = 0, splitk = 1, reduction = 0, swizzle = 0;
  bool heuristic = false;
  cublasLtMatmulAlgo_t algo;
  double us = 0.0;
};

struct Result {
  std::string name;
  int64_t M, N, K;
  int tried = 0, valid = 0;
  Config heuristic, best;
};

template <typename T>
std::vector<T> CapList(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoCapAttributes_t cap) {
  size_t bytes = 0;
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, cap, nullptr, 0, &bytes) !=
          CUBLAS_STATUS_SUCCESS ||
      bytes == 0)
    return {};
  std::vector<T> v(bytes / sizeof(T));
  LT_CHECK(cublasLtMatmulAlgoCapGetAttribute(&algo, cap, v.data(), bytes, &bytes));
  return v;
}

// One attribute of `algo`, read with `get` (cublasLtMatmulAlgoCapGetAttribute or
// cublasLtMatmulAlgoConfigGetAttribute); zero if it cannot be read.
template <typename T, typename Attr>
T AlgoValue(cublasStatus_t (*get)(const cublasLtMatmulAlgo_t*, Attr, void*, size_t, size_t*),
            const cublasLtMatmulAlgo_t& algo, Attr attr) {
  T v{};
  size_t bytes = 0;
  get(&algo, attr, &v, sizeof(v), &bytes);
  return v;
}

template <typename T>
T CapValue(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoCapAttributes_t cap) {
  return AlgoValue<T>(cublasLtMatmulAlgoCapGetAttribute, algo, cap);
}

template <typename T>
T ConfigValue(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  return AlgoValue<T>(cublasLtMatmulAlgoConfigGetAttribute, algo, attr);
}

class Product {
 public:
  Product(cublasLtHandle_t h, const Case& c, int64_t l2_bytes) : h_(h), c_(c) {
    LT_CHECK(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LT_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    LT_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_16BF, c.K, c.N, c.K));
    LT_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_16BF, c.K, c.M, c.ldx));
    LT_CHECK(cublasLtMatrixLayoutCreate(&d_, CUDA_R_32F, c.N, c.M, c.ldo));
    const int64_t w_bytes = c.N * c.K * 2;
    copies_ = static_cast<int>(std::max<int64_t>(2, 3 * l2_bytes / w_bytes + 1));
    BENCH_CUDA(cudaMalloc(&w_, w_bytes * copies_));
    BENCH_CUDA(cudaMemset(w_, 0x3c, w_bytes * copies_));  // bf16 ~0.011
    BENCH_CUDA(cudaMalloc(&x_, c.M * c.ldx * 2));
    BENCH_CUDA(cudaMemset(x_, 0x3c, c.M * c.ldx * 2));
    BENCH_CUDA(cudaMalloc(&out_, c.M * c.ldo * 4));
    BENCH_CUDA(cudaMemset(out_, 0, c.M * c.ldo * 4));
    BENCH_CUDA(cudaMalloc(&ws_, kWorkspaceBytes));
    BENCH_CUDA(cudaEventCreate(&e0_));
    BENCH_CUDA(cudaEventCreate(&e1_));
  }
  ~Product() {
    cublasLtMatmulDescDestroy(op_);
    cublasLtMatrixLayoutDestroy(a_);
    cublasLtMatrixLayoutDestroy(b_);
    cublasLtMatrixLayoutDestroy(d_);
    cudaFree(w_);
    cudaFree(x_);
    cudaFree(out_);
    cudaFree(ws_);
    cudaEventDestroy(e0_);
    cudaEventDestroy(e1_);
  }

  std::vector<cublasLtMatmulHeuristicResult_t> Heuristic(int n) {
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = kWorkspaceBytes;
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ws, sizeof(ws)));
    std::vector<cublasLtMatmulHeuristicResult_t> r(n);
    int found = 0;
    LT_CHECK(cublasLtMatmulAlgoGetHeuristic(h_, op_, a_, b_, d_, d_, pref, n, r.data(), &found));
    cublasLtMatmulPreferenceDestroy(pref);
    r.resize(found);
    return r;
  }

  bool Check(const cublasLtMatmulAlgo_t& algo) {
    cublasLtMatmulHeuristicResult_t r;
    return cublasLtMatmulAlgoCheck(h_, op_, a_, b_, d_, d_, &algo, &r) == CUBLAS_STATUS_SUCCESS &&
           r.workspaceSize <= kWorkspaceBytes;
  }

  // Mean microseconds per run over `runs` runs (weights rotating); < 0 if a run fails.
  double Time(const cublasLtMatmulAlgo_t& algo, int runs) {
    const float alpha = 1.0f, beta = c_.beta;
    auto run = [&](int i) {
      const char* w = static_cast<const char*>(w_) + (i % copies_) * c_.N * c_.K * 2;
      return cublasLtMatmul(h_, op_, &alpha, w, a_, x_, b_, &beta, out_, d_, out_, d_, &algo,
                            ws_, kWorkspaceBytes, nullptr);
    };
    for (int i = 0; i < 2; ++i) {
      if (run(i) != CUBLAS_STATUS_SUCCESS) return -1.0;
    }
    BENCH_CUDA(cudaEventRecord(e0_));
    for (int i = 0; i < runs; ++i) {
      if (run(i + 2) != CUBLAS_STATUS_SUCCESS) return -1.0;
    }
    BENCH_CUDA(cudaEventRecord(e1_));
    BENCH_CUDA(cudaEventSynchronize(e1_));
    if (cudaGetLastError() != cudaSuccess) return -1.0;
    float ms = 0.0f;
    BENCH_CUDA(cudaEventElapsedTime(&ms, e0_, e1_));
    return ms * 1e3 / runs;
  }

  double TimeCareful(const cublasLtMatmulAlgo_t& algo) {
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) t.push_back(Time(algo, 40));
    return Median(t);
  }

 private:
  cublasLtHandle_t h_;
  Case c_;
  cublasLtMatmulDesc_t op_;
  cublasLtMatrixLayout_t a_, b_, d_;
  void *w_ = nullptr, *x_ = nullptr, *out_ = nullptr, *ws_ = nullptr;
  int copies_ = 2;
  cudaEvent_t e0_, e1_;
};

Config Describe(const cublasLtMatmulAlgo_t& algo) {
  Config c;
  c.algo = algo;
  c.id = ConfigValue<int>(algo, CUBLASLT_ALGO_CONFIG_ID);
  c.tile = static_cast<int>(ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID));
  c.stages = static_cast<int>(ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID));
  c.splitk = ConfigValue<int>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM);
  c.reduction =
      static_cast<int>(ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME));
  c.swizzle = static_cast<int>(ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING));
  return c;
}

// `base` with tile, stages, split-k, reduction scheme and CTA swizzle set.
cublasLtMatmulAlgo_t Configured(const cublasLtMatmulAlgo_t& base, uint32_t tile, uint32_t stages,
                                int splitk, uint32_t reduction, uint32_t swizzle) {
  cublasLtMatmulAlgo_t a = base;
  cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile));
  cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages,
                                       sizeof(stages));
  cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                       sizeof(splitk));
  cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &reduction,
                                       sizeof(reduction));
  cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle,
                                       sizeof(swizzle));
  return a;
}

Result Explore(cublasLtHandle_t h, const Case& cs, int64_t l2_bytes) {
  Product prod(h, cs, l2_bytes);
  Result res;
  res.name = cs.name;
  res.M = cs.M;
  res.N = cs.N;
  res.K = cs.K;
  std::vector<Config> all;
  const auto heur = prod.Heuristic(16);
  if (heur.empty()) {
    std::fprintf(stderr, "%s: no heuristic result\n", cs.name);
    std::exit(2);
  }
  for (size_t i = 0; i < heur.size(); ++i) {
    Config c = Describe(heur[i].algo);
    c.heuristic = i == 0;
    all.push_back(c);
  }
  int ids[256];
  int n_ids = 0;
  LT_CHECK(cublasLtMatmulAlgoGetIds(h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF,
                                    CUDA_R_32F, CUDA_R_32F, 256, ids, &n_ids));
  for (int i = 0; i < n_ids; ++i) {
    cublasLtMatmulAlgo_t base;
    if (cublasLtMatmulAlgoInit(h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF,
                               CUDA_R_32F, CUDA_R_32F, ids[i], &base) != CUBLAS_STATUS_SUCCESS)
      continue;
    std::vector<uint32_t> tiles = CapList<uint32_t>(base, CUBLASLT_ALGO_CAP_TILE_IDS);
    std::vector<uint32_t> stages = CapList<uint32_t>(base, CUBLASLT_ALGO_CAP_STAGES_IDS);
    if (tiles.empty()) tiles.push_back(CUBLASLT_MATMUL_TILE_UNDEFINED);
    if (stages.empty()) stages.push_back(CUBLASLT_MATMUL_STAGES_UNDEFINED);
    // (split-k, reduction scheme) pairs the algorithm takes: no split with no scheme, else each
    // scheme of its mask.
    std::vector<std::pair<int, uint32_t>> splits = {{1, 0u}};
    if (CapValue<int>(base, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT) != 0) {
      const uint32_t mask = CapValue<uint32_t>(base, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK);
      for (int sk : {2, 3, 4, 6, 8}) {
        for (uint32_t red : {1u, 2u, 4u}) {
          if (mask & red) splits.push_back({sk, red});
        }
      }
    }
    const uint32_t swizzles =
        CapValue<uint32_t>(base, CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT) != 0 ? 2u : 1u;
    for (uint32_t tile : tiles) {
      for (uint32_t st : stages) {
        for (auto [sk, red] : splits) {
          for (uint32_t swz = 0; swz < swizzles; ++swz) {
            cublasLtMatmulAlgo_t a = Configured(base, tile, st, sk, red, swz);
            ++res.tried;
            if (!prod.Check(a)) continue;
            ++res.valid;
            all.push_back(Describe(a));
          }
        }
      }
    }
  }
  // Screening, then the eight fastest and the heuristic's pick timed carefully; the best is the
  // fastest of those.
  for (Config& c : all) c.us = prod.Time(c.algo, 10);
  std::sort(all.begin(), all.end(), [](const Config& x, const Config& y) {
    if ((x.us < 0) != (y.us < 0)) return y.us < 0;
    return x.us < y.us;
  });
  Config best;
  best.us = 1e30;
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].us < 0) break;
    if (i < 8 || all[i].heuristic) {
      all[i].us = prod.TimeCareful(all[i].algo);
      if (all[i].heuristic) res.heuristic = all[i];
      if (all[i].us < best.us) best = all[i];
    }
  }
  res.best = best;
  return res;
}

std::string ConfigText(const Config& c) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "id %d tile %d stages %d splitk %d red %d swz %d", c.id, c.tile,
                c.stages, c.splitk, c.reduction, c.swizzle);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "gemm_algo_bench.json";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      out_path = argv[i];
    }
  }
  const DeviceInfo dev = GetDeviceInfo();
  const double copy_bw = CopyBandwidth(size_t{1} << 30);
  std::printf("device: %s, %d SMs; device-to-device copy %.3f TB/s\n", dev.name.c_str(), dev.sms,
              copy_bw / 1e12);
  cublasLtHandle_t h;
  LT_CHECK(cublasLtCreate(&h));
  // gdn2_1.3B: d_model 2304, key_dim = value_dim = 2048, SwiGLU width 6208; output strides as
  // in the runner's buffers (proj_cols = 2 * 6208, y_cols = 6208).
  std::vector<Result> results;
  for (int64_t M : {int64_t{64}, int64_t{256}}) {
    if (quick && M != 256) continue;
    const Case cases[] = {{"in_proj", M, 10496, 2304, 2304, 12416, 0.0f},
                          {"w12", M, 12416, 2304, 2304, 12416, 0.0f},
                          {"w3", M, 2304, 6208, 6208, 2304, 1.0f},
                          {"o_proj", M, 2304, 2048, 6208, 2304, 1.0f}};
    for (const Case& c : cases) {
      results.push_back(Explore(h, c, dev.l2_bytes));
      const Result& r = results.back();
      std::printf("%-8s M %4lld: heuristic %7.2f us (%s); best %7.2f us (%s); %d of %d valid\n",
                  r.name.c_str(), static_cast<long long>(r.M), r.heuristic.us,
                  ConfigText(r.heuristic).c_str(), r.best.us, ConfigText(r.best).c_str(), r.valid,
                  r.tried);
      std::fflush(stdout);
    }
  }
  cublasLtDestroy(h);

  FILE* f = OpenJsonReport(out_path, "gemm_algo", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"copy_bw_bytes_per_s\": %.6e,\n", copy_bw);
  std::fprintf(f,
               "  \"timing\": \"weights rotating over copies (3x L2), median of 5 x 40 runs\",\n");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::fprintf(f,
                 "    {\"product\": \"%s\", \"M\": %lld, \"N\": %lld, \"K\": %lld, "
                 "\"configs_valid\": %d, \"heuristic_us\": %.3f, \"heuristic\": \"%s\", "
                 "\"best_us\": %.3f, \"best\": \"%s\"}%s\n",
                 r.name.c_str(), static_cast<long long>(r.M), static_cast<long long>(r.N),
                 static_cast<long long>(r.K), r.valid, r.heuristic.us,
                 ConfigText(r.heuristic).c_str(), r.best.us, ConfigText(r.best).c_str(),
                 i + 1 < results.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  return 0;
}
