// End-to-end decode benchmark of the CUDA runner on the two 1.3B reference configurations
// (MODEL_SPEC.md section 4) with random bf16 weights generated on the device: tokens/s at batch
// 1, 16, 64, 256 (CUDA-graph decode passes, positions past the SWA window so every SWA layer
// reads a full ring), and the ratio to the roofline = (weight bytes + state bytes a step must
// move) / copy bandwidth measured in the same run (a 1 GiB copy at the start and at the end; the
// faster of the two).
//
// Usage: decode_e2e_bench [out.json] [--quick] [--batches-1-256] [--batches=1,4,...]
//                         [--variants=0,1,...] [--gemv-kernels] [--no-compare]
//                         [--hold-gib=N] [--churn-gib=N] [--models=pure|hybrid]
//                         [--one-process]
// (--quick: fewer timed passes; --batches-1-256: batch 1 and 256 only; --batches: the batch
// sizes; --variants: which of the state / GDN-2 kernel variants below to run; rows at batch
// <= 8 run four times, with the small-batch GEMV kernels (path "gemv", gemv_max_rows = 8), the
// same with the gate up-projections always inside the GDN-2 launch (path "gemv-folded",
// fold_gates_from_rows = 1) and never (path "gemv-unfolded", 0), and the cuBLASLt arrangement
// (path "cublas", gemv_max_rows = 0), unless --no-compare;
// --gemv-kernels: also time each projection shape of gdn2_1.3B alone, GEMV vs cuBLASLt, cycling
// over weight copies larger than L2; --hold-gib: N GiB of other device memory allocated and
// written before the rows and held through them, as a server's large state pool would be;
// --churn-gib: the same allocated, written and freed before the rows, as the large-batch rows
// of a full run leave the device; --models: only the pure or only the hybrid configuration, so
// that one row can run in a process of its own; --one-process: every row in this process, one
// after another, instead of each row in a process of its own (see RunRowInChild))
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/reference_models.h"
#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/device_weights.h"
#include "engine/model_config.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.h"

using namespace deltaserve;
using namespace deltaserve::bench;

namespace {

struct Row {
  std::string model, state, note, kernel = "auto", path = "default";
  int batch = 0;
  double step_ms = 0, tokens_per_s = 0, weight_bytes = 0, state_bytes = 0, roofline_ms = 0,
         ratio = 0;
};

// State bytes one decode step moves for `batch` slots whose SWA rings are full.
double StateBytes(const ModelConfig& c, const StateLayout& L, int batch) {
  const Gdn2Config& g = c.gdn2;
  const double rec = static_cast<double>(L.recurrent_elems()) * StateDtypeBytes(L.state_dtype());
  const double elem = StateDtypeBytes(L.ring_dtype());
  const double conv = static_cast<double>(g.conv_size - 1) * (2 * g.key_dim() + g.value_dim()) * 4;
  const double gdn = 2 * (rec + conv);
  const double ring_read =
      2.0 * c.swa.local_window * c.swa.n_query_groups * c.swa.head_size * elem;
  const double ring_write = 2.0 * c.swa.n_query_groups * c.swa.head_size * elem;
  return batch * (c.NumGdn2Layers() * gdn + c.NumSwaLayers() * (ring_read + ring_write));
}

struct KernelRow {
  std::string name;
  int rows = 0;
  double gemv_us = 0, gemv_pdl_us = 0, cublas_us = 0, bytes = 0;
};

// Each projection shape of gdn2_1.3B alone: GEMV (plain and programmatic launches) vs the
// cuBLASLt GEMM (plus, where the GEMV fuses one, the separate norm / SwiGLU kernel), per launch,
// cycling over weight copies (> 256 MB in all) so that no launch finds its weights in L2.
std::vector<KernelRow> TimeKernels(double copy_bw) {
  std::vector<KernelRow> out;
  const ModelConfig c = ReferenceConfig(false);
  const int64_t d = c.n_embd, I = c.intermediate_size, V = c.padded_vocab_size;
  const int64_t kd = c.gdn2.key_dim(), vd = c.gdn2.value_dim(), dv = c.gdn2.head_v_dim;
  const int64_t in_rows = 3 * kd + 2 * vd + 2 * dv;
  using In = cuda::GemvInput;
  using Out = cuda::GemvOutput;
  struct Shape {
    const char* name;
    int64_t n, k;
    In in;
    Out out;
  };
  const Shape shapes[] = {{"in_proj+norm", in_rows, d, In::kF32RmsNorm, Out::kF32},
                          {"f1|g1 (2 problems)", kd, dv, In::kF32, Out::kF32},
                          {"o_proj+residual", d, vd, In::kBf16, Out::kF32Accumulate},
                          {"w12+norm+swiglu", I, d, In::kF32RmsNorm, Out::kSwiGluBf16},
                          {"w3+residual", d, I, In::kBf16, Out::kF32Accumulate},
                          {"lm_head+norm", V, d, In::kF32RmsNorm, Out::kF32}};
  auto gemm = cuda::Gemm::Create();
  if (!gemm.ok()) return out;
  cudaStream_t st;
  BENCH_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  float *x = nullptr, *gamma = nullptr, *o = nullptr;
  void *xb = nullptr, *ob = nullptr;
  BENCH_CUDA(cudaMalloc(&x, 8 * 8192 * 4));
  BENCH_CUDA(cudaMalloc(&xb, 8 * 8192 * 2));
  BENCH_CUDA(cudaMalloc(&gamma, 8192 * 4));
  BENCH_CUDA(cudaMalloc(&o, 8 * 2 * 32768 * 4));
  BENCH_CUDA(cudaMalloc(&ob, 8 * 2 * 32768 * 4));
  (void)cuda::LaunchFillRandom(x, cuda::DType::kF32, 8 * 8192, 1, 1.0f, 0.0f, st);
  (void)cuda::LaunchFillRandom(xb, cuda::DType::kBF16, 8 * 8192, 2, 1.0f, 0.0f, st);
  (void)cuda::LaunchFillRandom(gamma, cuda::DType::kF32, 8192, 3, 0.1f, 1.0f, st);
  (void)cuda::LaunchFillRandom(o, cuda::DType::kF32, 8 * 2 * 32768, 4, 0.1f, 0.0f, st);
  for (int rows : {1, 2, 4, 8}) {
    for (const Shape& sh : shapes) {
      const bool swiglu = sh.out == Out::kSwiGluBf16;
      const bool two = sh.k == dv;
      const int64_t wbytes = (swiglu || two ? 2 : 1) * sh.n * sh.k * 2;
      const int copies = static_cast<int>(std::max<int64_t>(4, (int64_t{256} << 20) / wbytes + 1));
      void* w = nullptr;
      BENCH_CUDA(cudaMalloc(&w, static_cast<size_t>(wbytes) * copies));
      (void)cuda::LaunchFillRandom(w, cuda::DType::kBF16, wbytes / 2 * copies, 5, 0.02f, 0.0f, st);
      auto wp = [&](int i) { return static_cast<char*>(w) + static_cast<int64_t>(i) * wbytes; };
      auto gemv_args = [&](int i, bool programmatic) {
        cuda::GemvArgs a;
        a.rows = rows;
        a.k = sh.k;
        a.input = sh.in;
        a.output = sh.out;
        a.gamma = gamma;
        const void* xin = sh.in == In::kBf16 ? xb : static_cast<const void*>(x);
        if (two) {
          a.problems[0] = cuda::GemvProblem{xin, sh.k, wp(i), sh.k, sh.n, o, sh.n};
          a.problems[1] = cuda::GemvProblem{xin, sh.k, wp(i) + sh.n * sh.k * 2, sh.k, sh.n,
                                            o + rows * sh.n, sh.n};
          a.num_problems = 2;
        } else {
          a.problems[0] = cuda::GemvProblem{xin, sh.k, wp(i), sh.k, sh.n, swiglu ? ob : o, sh.n};
        }
        a.programmatic = programmatic;
        return a;
      };
      KernelRow kr;
      kr.name = sh.name;
      kr.rows = rows;
      kr.bytes = static_cast<double>(cuda::GemvBytes(gemv_args(0, false)));
      BENCH_CUDA(cudaStreamSynchronize(st));
      for (int pdl = 0; pdl < 2; ++pdl) {
        const double t = TimeGraph(
            st,
            [&] {
              for (int i = 0; i < copies; ++i) (void)cuda::LaunchGemv(gemv_args(i, pdl), st);
            },
            copies);
        (pdl ? kr.gemv_pdl_us : kr.gemv_us) = t * 1e6;
      }
      const auto F32 = cuda::DType::kF32;
      (void)(*gemm)->Run(rows, swiglu ? 2 * sh.n : sh.n, sh.k, xb, sh.k, wp(0), sh.k, o,
                         swiglu ? 2 * sh.n : sh.n, F32, 0.0f, st);  // plan outside the capture
      BENCH_CUDA(cudaStreamSynchronize(st));
      kr.cublas_us = 1e6 * TimeGraph(
                               st,
                               [&] {
                                 for (int i = 0; i < copies; ++i) {
                                   if (sh.in == In::kF32RmsNorm)
                                     (void)cuda::LaunchRmsNormToBf16(x, sh.k, rows, sh.k, gamma,
                                                                     1e-5f, xb, sh.k, st);
                                   const int64_t n = swiglu ? 2 * sh.n : sh.n;
                                   // The runner stores the w12 product bf16.
                                   (void)(*gemm)->Run(rows, n, sh.k, xb, sh.k, wp(i), sh.k, o, n,
                                                      swiglu ? cuda::DType::kBF16 : F32,
                                                      sh.out == Out::kF32Accumulate ? 1.0f : 0.0f,
                                                      st);
                                   if (two)
                                     (void)(*gemm)->Run(rows, sh.n, sh.k, xb, sh.k,
                                                        wp(i) + sh.n * sh.k * 2, sh.k, o, sh.n, F32,
                                                        0.0f, st);
                                   if (swiglu)
                                     (void)cuda::LaunchSwiGlu(o, cuda::DType::kBF16, 2 * sh.n,
                                                              rows, sh.n, ob, sh.n, st);
                                 }
                               },
                               copies);
      BENCH_CUDA(cudaFree(w));
      std::printf("kernel %-20s rows %d: %7.2f MB  gemv %7.2f us, programmatic %7.2f us (%.2f of "
                  "copy), cublas(+row ops) %7.2f us\n",
                  kr.name.c_str(), rows, kr.bytes / 1e6, kr.gemv_us, kr.gemv_pdl_us,
                  kr.bytes / copy_bw / (kr.gemv_pdl_us * 1e-6), kr.cublas_us);
      std::fflush(stdout);
      out.push_back(kr);
    }
  }
  cudaFree(x);
  cudaFree(xb);
  cudaFree(gamma);
  cudaFree(o);
  cudaFree(ob);
  cudaStreamDestroy(st);
  return out;
}

// `gib` GiB of device memory, allocated and written (so its pages are populated).
void* AllocateWritten(int gib) {
  const size_t bytes = static_cast<size_t>(gib) << 30;
  void* p = nullptr;
  BENCH_CUDA(cudaMalloc(&p, bytes));
  BENCH_CUDA(cudaMemset(p, 1, bytes));
  BENCH_CUDA(cudaDeviceSynchronize());
  return p;
}

// One row of the table: a model, a state / GDN-2 kernel variant, a batch size and a path.
struct RowSpec {
  bool hybrid = false;
  int variant = 0, batch = 1, path = 0;
};

// The rows a run measures, in the order they are printed.
std::vector<RowSpec> PlanRows(const std::vector<bool>& models, const std::vector<int>& variants,
                              const std::vector<int>& batches, bool compare) {
  std::vector<RowSpec> plan;
  for (const bool hybrid : models) {
    for (int variant = 0; variant < 5; ++variant) {
      if (std::find(variants.begin(), variants.end(), variant) == variants.end()) continue;
      // 0: fp32 state, 1: bf16 state (automatic GDN-2 kernel choice); pure model only, fp32
      // state: 2: fused kernel, plain launch; 3: streamed kernels; hybrid model only: 4: fp32
      // state with bf16 SWA rings.
      if ((variant == 2 || variant == 3) && hybrid) continue;
      if (variant == 4 && !hybrid) continue;
      for (const int batch : batches) {
        const bool small = batch <= cuda::kGemvMaxRows;
        if (variant == 2 && batch == 256) continue;  // fused is the small-batch arrangement
        if (variant == 3 && small) continue;         // streamed is the large-batch one
        // Paths: 0 GEMV kernels (gemv_max_rows = 8), 1 cuBLASLt (gemv_max_rows = 0), 2 / 3
        // GEMV kernels with the gate up-projections never / always folded into the GDN-2 launch.
        for (int path = 0; path < (small && compare && variant <= 1 ? 4 : 1); ++path)
          plan.push_back({hybrid, variant, batch, path});
      }
    }
  }
  return plan;
}

// Measures one row in this process: a runner of its own with random weights and state.
// nullopt (after a message on stderr) on an error.
std::optional<Row> RunRow(const RowSpec& spec, bool quick) {
  const bool hybrid = spec.hybrid;
  const int variant = spec.variant, batch = spec.batch, path = spec.path;
  const ModelConfig cfg = ReferenceConfig(hybrid);
  const StateDtype sd = variant == 1 ? StateDtype::kBF16 : StateDtype::kF32;
  const std::optional<StateDtype> ring =
      variant == 4 ? std::optional<StateDtype>(StateDtype::kBF16) : std::nullopt;
  const bool small = batch <= cuda::kGemvMaxRows;
  Row row;
  static const char* const kPaths[] = {"gemv", "cublas", "gemv-unfolded", "gemv-folded"};
  row.path = small ? kPaths[path] : "cublas";
  static const char* const kNames[] = {"auto", "auto", "fused", "streamed", "auto"};
  row.kernel = kNames[variant];
  row.model = hybrid ? "swa_gdn2_1.3B" : "gdn2_1.3B";
  row.state = ring ? "f32+r16" : sd == StateDtype::kF32 ? "f32" : "bf16";
  row.batch = batch;
  const StateLayout layout(cfg, sd, ring);
  const double pool = static_cast<double>(layout.slot_bytes()) * batch;
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  if (pool + 4e9 > static_cast<double>(free_b)) {
    row.note = "state pool does not fit in device memory";
    std::printf("%s %s batch %d: skipped (%.1f GB pool)\n", row.model.c_str(),
                row.state.c_str(), batch, pool / 1e9);
    return row;
  }
  auto w = DeviceWeights::Random(cfg, 42);
  if (!w.ok()) {
    std::fprintf(stderr, "weights: %s\n", std::string(w.status().message()).c_str());
    return std::nullopt;
  }
  row.weight_bytes = static_cast<double>((*w)->step_read_bytes());
  CudaRunnerOptions opts;
  opts.state_dtype = sd;
  opts.ring_dtype = ring;
  opts.num_slots = batch;
  opts.max_rows = 256;
  opts.graph_batch_sizes = {batch};
  opts.gdn2_kernel = variant == 2   ? CudaRunnerOptions::Gdn2Kernel::kFused
                     : variant == 3 ? CudaRunnerOptions::Gdn2Kernel::kStreamed
                                    : CudaRunnerOptions::Gdn2Kernel::kAuto;
  opts.gdn2_overlap_launch = variant != 2;
  opts.gemv_max_rows = path == 1 ? 0 : cuda::kGemvMaxRows;
  if (path >= 2) opts.fold_gates_from_rows = path == 2 ? 0 : 1;
  auto r = CudaModelRunner::Create(*std::move(w), opts);
  if (!r.ok()) {
    std::fprintf(stderr, "runner: %s\n", std::string(r.status().message()).c_str());
    return std::nullopt;
  }
  CudaModelRunner& runner = **r;
  // Random state (never zeros), positions past the window (full SWA rings), in slots
  // 0 .. batch-1: where lowest-first slot assignment puts a full batch.
  DeviceStateStorage& st = runner.device_state();
  BENCH_CUDA(cudaDeviceSynchronize());
  for (const StateSegment& g : layout.segments()) {
    if (!cuda::LaunchFillRandom(st.Address(0, g.begin), cuda::DType::kF32,
                                static_cast<int64_t>(g.bytes * batch / 4), 7 + g.begin,
                                0.02f, 0.0f, nullptr).ok())
      return std::nullopt;
  }
  for (int s = 0; s < batch; ++s) {
    // bf16 storage: the recurrent states or the rings refilled with bf16 values.
    auto fill_bf16 = [&](size_t offset, size_t elems, uint64_t seed) {
      return cuda::LaunchFillRandom(st.Address(s, offset), cuda::DType::kBF16,
                                    static_cast<int64_t>(elems), seed, 0.02f, 0.0f,
                                    nullptr).ok();
    };
    for (int li = 0; li < cfg.n_layer; ++li) {
      const LayerStateRegions& reg = layout.layer(li);
      const uint64_t seed = 100 + s * 64 + li;
      bool ok = true;
      if (cfg.IsGdn2Layer(li) && layout.state_dtype() == StateDtype::kBF16) {
        ok = fill_bf16(reg.gdn2.recurrent, layout.recurrent_elems(), seed);
      } else if (!cfg.IsGdn2Layer(li) && layout.ring_dtype() == StateDtype::kBF16) {
        ok = fill_bf16(reg.swa.k_ring, layout.ring_elems(), seed) &&
             fill_bf16(reg.swa.v_ring, layout.ring_elems(), seed + 32);
      }
      if (!ok) return std::nullopt;
    }
    const int64_t pos = 3 * cfg.swa.local_window + s;
    BENCH_CUDA(cudaMemcpy(st.Address(s, layout.position_offset()), &pos, 8,
                          cudaMemcpyHostToDevice));
  }
  BENCH_CUDA(cudaDeviceSynchronize());
  // Rows in slot order, as the runner's Step orders them.
  std::vector<int> slots(batch);
  std::iota(slots.begin(), slots.end(), 0);
  std::mt19937 rng(batch);
  std::vector<int32_t> toks(batch);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % cfg.vocab_size);
  const int warm = 3, steps = quick ? 5 : (batch >= 64 && hybrid ? 10 : 20);
  for (int i = 0; i < warm; ++i) {
    absl::Status s = runner.DecodePass(slots, toks);
    if (!s.ok()) {
      std::fprintf(stderr, "decode: %s\n", std::string(s.message()).c_str());
      return std::nullopt;
    }
  }
  if (!runner.Synchronize().ok()) return std::nullopt;
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    BENCH_CUDA(cudaEventRecord(e0, runner.stream()));
    if (!runner.DecodePass(slots, toks).ok()) return std::nullopt;
    BENCH_CUDA(cudaEventRecord(e1, runner.stream()));
    BENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    times.push_back(ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  row.step_ms = Median(times);
  row.tokens_per_s = batch / (row.step_ms * 1e-3);
  row.state_bytes = StateBytes(cfg, layout, batch);
  std::printf("%s %s %s %s batch %d: %.3f ms/step, %.0f tok/s\n", row.model.c_str(),
              row.kernel.c_str(), row.path.c_str(), row.state.c_str(), batch, row.step_ms,
              row.tokens_per_s);
  std::fflush(stdout);
  return row;
}

// The same row measured in a process of its own (this program, run with --row): in one process
// the rows after the first read up to 13 % slow, after the device memory that earlier rows freed
// (bench/NOTES.md, "End-to-end rows in processes of their own"), while a server allocates its
// one runner in a fresh process. `flags` are passed on (--quick, --hold-gib, --churn-gib). The child's output is
// echoed; its result comes back as one "ROW ..." line.
std::optional<Row> RunRowInChild(const RowSpec& spec, const std::string& flags) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    std::fprintf(stderr, "cannot find this program's path\n");
    return std::nullopt;
  }
  exe[n] = 0;
  const std::string cmd = std::string("'") + exe + "' --row=" + std::to_string(spec.hybrid) +
                          "," + std::to_string(spec.variant) + "," +
                          std::to_string(spec.batch) + "," + std::to_string(spec.path) + flags;
  std::fflush(stdout);
  FILE* child = popen(cmd.c_str(), "r");
  if (child == nullptr) {
    std::fprintf(stderr, "cannot start %s\n", cmd.c_str());
    return std::nullopt;
  }
  std::optional<Row> row;
  char line[1024];
  while (std::fgets(line, sizeof(line), child) != nullptr) {
    if (std::strncmp(line, "ROW ", 4) != 0) {
      std::fputs(line, stdout);
      continue;
    }
    char model[64], kernel[64], path[64], state[64];
    Row r;
    int used = 0;
    if (std::sscanf(line + 4, "%63s %63s %63s %63s %d %lf %lf %lf %n", model, kernel, path,
                    state, &r.batch, &r.step_ms, &r.weight_bytes, &r.state_bytes, &used) < 8)
      break;
    r.model = model, r.kernel = kernel, r.path = path, r.state = state;
    r.note = line + 4 + used;
    while (!r.note.empty() && (r.note.back() == '\n' || r.note.back() == ' ')) r.note.pop_back();
    if (r.step_ms > 0) r.tokens_per_s = r.batch / (r.step_ms * 1e-3);
    row = r;
  }
  const int status = pclose(child);
  if (status != 0 || !row) {
    std::fprintf(stderr, "row process failed (status %d): %s\n", status, cmd.c_str());
    return std::nullopt;
  }
  return row;
}

// The line by which a child process returns its row.
void PrintRowLine(const Row& r) {
  std::printf("ROW %s %s %s %s %d %.6f %.0f %.0f %s\n", r.model.c_str(), r.kernel.c_str(),
              r.path.c_str(), r.state.c_str(), r.batch, r.step_ms, r.weight_bytes,
              r.state_bytes, r.note.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "decode_e2e_bench.json";
  bool quick = false, kernels = false, compare = true, one_process = false;
  int hold_gib = 0, churn_gib = 0;
  std::optional<RowSpec> child_row;  // --row: this process is one row's child
  std::vector<int> batches = {1, 16, 64, 256}, variants = {0, 1, 2, 3, 4};
  std::vector<bool> models = {false, true};  // hybrid?
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--batches-1-256") == 0) {
      batches = {1, 256};
    } else if (std::strncmp(argv[i], "--batches=", 10) == 0) {
      batches.clear();
      for (const char* p = argv[i] + 10; *p != 0;) {
        char* end = nullptr;
        const long b = std::strtol(p, &end, 10);
        if (end == p || b < 1 || b > 256) {
          std::fprintf(stderr, "bad --batches list\n");
          return 1;
        }
        batches.push_back(static_cast<int>(b));
        p = *end == ',' ? end + 1 : end;
      }
    } else if (std::strncmp(argv[i], "--variants=", 11) == 0) {
      variants.clear();
      for (const char* p = argv[i] + 11; *p != 0; ++p) {
        if (*p >= '0' && *p <= '4') variants.push_back(*p - '0');
      }
    } else if (std::strcmp(argv[i], "--models=pure") == 0) {
      models = {false};
    } else if (std::strcmp(argv[i], "--models=hybrid") == 0) {
      models = {true};
    } else if (std::strcmp(argv[i], "--gemv-kernels") == 0) {
      kernels = true;
    } else if (std::strcmp(argv[i], "--no-compare") == 0) {
      compare = false;
    } else if (std::strcmp(argv[i], "--one-process") == 0) {
      one_process = true;
    } else if (std::strncmp(argv[i], "--row=", 6) == 0) {
      int h = 0;
      RowSpec r;
      if (std::sscanf(argv[i] + 6, "%d,%d,%d,%d", &h, &r.variant, &r.batch, &r.path) != 4) {
        std::fprintf(stderr, "bad --row\n");
        return 1;
      }
      r.hybrid = h != 0;
      child_row = r;
    } else if (std::strncmp(argv[i], "--hold-gib=", 11) == 0) {
      hold_gib = std::atoi(argv[i] + 11);
    } else if (std::strncmp(argv[i], "--churn-gib=", 12) == 0) {
      churn_gib = std::atoi(argv[i] + 12);
    } else {
      out_path = argv[i];
    }
  }
  // Memory churned before the rows or held through them, in the process that runs the rows.
  void* held = nullptr;
  auto prepare_memory = [&] {
    if (churn_gib > 0) {
      BENCH_CUDA(cudaFree(AllocateWritten(churn_gib)));
      std::printf("churned %d GiB of device memory\n", churn_gib);
    }
    held = hold_gib > 0 ? AllocateWritten(hold_gib) : nullptr;
    if (held != nullptr) std::printf("holding %d GiB of device memory\n", hold_gib);
  };
  if (child_row) {
    prepare_memory();
    const std::optional<Row> row = RunRow(*child_row, quick);
    if (!row) return 2;
    PrintRowLine(*row);
    if (held != nullptr) BENCH_CUDA(cudaFree(held));
    return 0;
  }

  const DeviceInfo dev = GetDeviceInfo();
  std::printf("device: %s, %d SMs, %.1f GB\n", dev.name.c_str(), dev.sms, dev.mem_bytes / 1e9);
  const double copy_bw = CopyBandwidth(size_t{1} << 30);
  std::printf("device-to-device copy: %.3f TB/s\n", copy_bw / 1e12);
  std::vector<KernelRow> krows;
  if (kernels) krows = TimeKernels(copy_bw);
  std::string child_flags = quick ? " --quick" : "";
  if (one_process) {
    prepare_memory();
  } else {
    if (hold_gib > 0) child_flags += " --hold-gib=" + std::to_string(hold_gib);
    if (churn_gib > 0) child_flags += " --churn-gib=" + std::to_string(churn_gib);
  }
  std::vector<Row> rows;
  for (const RowSpec& spec : PlanRows(models, variants, batches, compare)) {
    const std::optional<Row> row =
        one_process ? RunRow(spec, quick) : RunRowInChild(spec, child_flags);
    if (!row) return 2;
    rows.push_back(*row);
  }

  // The roofline uses the faster of the copies timed at the start and the end, so a slow sample
  // never inflates a ratio.
  const double copy_bw_end = CopyBandwidth(size_t{1} << 30);
  const double copy_ref = std::max(copy_bw, copy_bw_end);
  for (Row& r : rows) {
    if (!r.note.empty()) continue;
    r.roofline_ms = (r.weight_bytes + r.state_bytes) / copy_ref * 1e3;
    r.ratio = r.roofline_ms / r.step_ms;
  }

  FILE* f = OpenJsonReport(out_path, "decode_end_to_end", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"copy_bw_bytes_per_s\": [%.6e, %.6e],\n", copy_bw, copy_bw_end);
  if (hold_gib > 0 || churn_gib > 0) {
    std::fprintf(f, "  \"other_device_memory_gib\": {\"held\": %d, \"churned\": %d},\n", hold_gib,
                 churn_gib);
  }
  std::fprintf(f,
               "  \"method\": \"random bf16 weights on device; one decode pass = CUDA graph "
               "replay incl. lm_head, no sampling; median of timed passes (events); SWA rings full "
               "(position > window); %s; roofline = (weight bytes read once + state bytes "
               "read+written) / copy bandwidth (the faster of two 1 GiB copies, at start and "
               "end)\",\n",
               one_process ? "all rows in one process" : "each row in a process of its own");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"model\": \"%s\", \"gdn2_kernel\": \"%s\", \"path\": \"%s\", "
                 "\"state\": \"%s\", \"batch\": %d, \"ms_per_step\": %.4f, "
                 "\"tokens_per_s\": %.1f, \"weight_bytes\": %.0f, \"state_bytes\": %.0f, "
                 "\"roofline_ms\": %.4f, \"ratio_to_roofline\": %.4f, \"note\": \"%s\"}%s\n",
                 r.model.c_str(), r.kernel.c_str(), r.path.c_str(), r.state.c_str(), r.batch,
                 r.step_ms, r.tokens_per_s,
                 r.weight_bytes, r.state_bytes, r.roofline_ms, r.ratio, r.note.c_str(),
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ],\n  \"kernels\": [\n");
  for (size_t i = 0; i < krows.size(); ++i) {
    const KernelRow& k = krows[i];
    std::fprintf(f,
                 "    {\"shape\": \"%s\", \"rows\": %d, \"bytes\": %.0f, \"gemv_us\": %.3f, "
                 "\"gemv_programmatic_us\": %.3f, \"cublas_us\": %.3f}%s\n",
                 k.name.c_str(), k.rows, k.bytes, k.gemv_us, k.gemv_pdl_us, k.cublas_us,
                 i + 1 < krows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);

  std::printf("\ncopy bandwidth: %.3f TB/s at start, %.3f TB/s at end (roofline: the faster)\n",
              copy_bw / 1e12, copy_bw_end / 1e12);
  std::printf("%-14s %-8s %-16s %-7s %6s %10s %10s %11s %7s\n", "model", "kernel", "path",
              "state", "batch", "ms/step", "tok/s", "roofline ms", "ratio");
  for (const Row& r : rows) {
    if (!r.note.empty()) {
      std::printf("%-14s %-8s %-16s %-7s %6d   (%s)\n", r.model.c_str(), r.kernel.c_str(),
                  r.path.c_str(), r.state.c_str(), r.batch, r.note.c_str());
      continue;
    }
    std::printf("%-14s %-8s %-16s %-7s %6d %10.3f %10.0f %11.3f %7.3f\n", r.model.c_str(),
                r.kernel.c_str(), r.path.c_str(), r.state.c_str(), r.batch, r.step_ms,
                r.tokens_per_s, r.roofline_ms, r.ratio);
  }
  if (held != nullptr) BENCH_CUDA(cudaFree(held));
  return 0;
}
