// Benchmark of the sliding-window attention prefill (kernels/cuda/swa_prefill.h) for one layer of
// the swa_gdn2_1.3B model (18 heads x 128, window 2048, full RoPE): the tensor-core attention
// beside the fp32-FMA attention in the same run, for one prompt of T tokens starting at position
// 0 (fresh slot) and at position 4096 (a full ring before the prompt), with the rings stored f32
// and bf16 (as with bf16 state or --ring-dtype bf16). Reports time per launch
// (median of event-timed launches, RoPE and ring write included), achieved TFLOP/s of the
// attention products (2 flops per multiply-add, QK^T and PV over each query's visible keys) and
// the largest relative difference between the two paths' outputs.
//
// Usage: swa_prefill_bench [out.json]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cuda/swa_prefill.h"

using namespace deltaserve::bench;
using deltaserve::cuda::DType;
using deltaserve::cuda::LaunchSwaPrefill;
using deltaserve::cuda::SwaDecodeShape;
using deltaserve::cuda::SwaPrefillArgs;

namespace {

struct Row {
  DType ring = DType::kF32;
  int64_t tokens = 0, start = 0;
  double mma_s = 0, fma_s = 0, flops = 0, rel_diff = 0;
};

double AttentionFlops(const SwaDecodeShape& s, int64_t start, int64_t T) {
  double keys = 0;
  for (int64_t p = start; p < start + T; ++p) keys += std::min<int64_t>(p + 1, s.window);
  return keys * s.n_head * s.head_size * 2.0 * 2.0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out_path = argc > 1 ? argv[1] : "swa_prefill_bench.json";
  const DeviceInfo dev = GetDeviceInfo();
  std::printf("device: %s, %d SMs\n", dev.name.c_str(), dev.sms);
  SwaDecodeShape s;
  s.n_head = 18;
  s.n_query_groups = 18;
  s.head_size = 128;
  s.window = 2048;
  s.rope_dims = 128;
  const int64_t max_tokens = 16384;
  const int64_t W = s.qkv_width(), yw = int64_t{s.n_head} * s.head_size;
  const int64_t ring_elems = int64_t{s.window} * s.n_query_groups * s.head_size;
  const int64_t slot_bytes = 64 + 2 * ring_elems * 4;  // room for f32 rings

  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> h_qkv(max_tokens * W);
  for (auto& x : h_qkv) x = nd(rng);
  // Both rings' initial contents, as f32 and as bf16 (the same values rounded).
  std::vector<float> h_ring(2 * ring_elems);
  for (auto& x : h_ring) x = nd(rng);
  std::vector<uint16_t> h_ring_bf16(h_ring.size());
  for (size_t i = 0; i < h_ring.size(); ++i)
    h_ring_bf16[i] = deltaserve::cpu::FloatToBf16(h_ring[i]);
  float *qkv = nullptr, *y_mma = nullptr, *y_fma = nullptr, *scratch = nullptr;
  char* pool = nullptr;
  int32_t *cu = nullptr, *slots = nullptr;
  const int64_t scratch_floats = deltaserve::cuda::SwaPrefillScratchFloats(s, max_tokens);
  BENCH_CUDA(cudaMalloc(&qkv, h_qkv.size() * 4));
  BENCH_CUDA(cudaMalloc(&y_mma, max_tokens * yw * 4));
  BENCH_CUDA(cudaMalloc(&y_fma, max_tokens * yw * 4));
  BENCH_CUDA(cudaMalloc(&scratch, scratch_floats * 4));
  BENCH_CUDA(cudaMalloc(&pool, slot_bytes));
  BENCH_CUDA(cudaMalloc(&cu, 2 * 4));
  BENCH_CUDA(cudaMalloc(&slots, 4));
  BENCH_CUDA(cudaMemcpy(qkv, h_qkv.data(), h_qkv.size() * 4, cudaMemcpyHostToDevice));
  BENCH_CUDA(cudaMemset(slots, 0, 4));
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreate(&stream));
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));

  std::vector<Row> rows;
  for (DType ring_type : {DType::kF32, DType::kBF16}) {
    s.ring_type = ring_type;
    const int64_t ring = ring_elems * (ring_type == DType::kF32 ? 4 : 2);
    const void* ring_image = ring_type == DType::kF32 ? static_cast<const void*>(h_ring.data())
                                                       : h_ring_bf16.data();
    for (int64_t start : {int64_t{0}, int64_t{4096}}) {
      for (int64_t T : {int64_t{512}, int64_t{4096}, int64_t{16384}}) {
        const int32_t h_cu[2] = {0, static_cast<int32_t>(T)};
        BENCH_CUDA(cudaMemcpy(cu, h_cu, 8, cudaMemcpyHostToDevice));
        SwaPrefillArgs a;
        a.num_seqs = 1;
        a.cu_seqlens = cu;
        a.total_tokens = T;
        a.slots = slots;
        a.pool = pool;
        a.num_slots = 1;
        a.slot_stride_bytes = slot_bytes;
        a.position_offset = 0;
        a.k_ring_offset = 64;
        a.v_ring_offset = 64 + ring;
        a.qkv = qkv;
        a.qkv_stride = W;
        a.y_stride = yw;
        a.scratch = scratch;
        a.scratch_floats = scratch_floats;
        Row row;
        row.ring = ring_type;
        row.tokens = T;
        row.start = start;
        row.flops = AttentionFlops(s, start, T);
        for (bool tc : {true, false}) {
          a.tensor_cores = tc;
          a.y = tc ? y_mma : y_fma;
          std::vector<double> times;
          const int reps = tc ? 7 : (T >= 16384 ? 2 : 4);
          for (int i = 0; i < reps; ++i) {
            // The launch writes the ring, so every timed launch starts from the same pool.
            BENCH_CUDA(cudaMemcpyAsync(pool, &start, 8, cudaMemcpyHostToDevice, stream));
            BENCH_CUDA(cudaMemcpyAsync(pool + 64, ring_image, 2 * ring, cudaMemcpyHostToDevice,
                                       stream));
            BENCH_CUDA(cudaEventRecord(e0, stream));
            const absl::Status st = LaunchSwaPrefill(s, a, stream);
            BENCH_CUDA(cudaEventRecord(e1, stream));
            if (!st.ok()) {
              std::fprintf(stderr, "launch: %s\n", std::string(st.message()).c_str());
              return 2;
            }
            BENCH_CUDA(cudaEventSynchronize(e1));
            float ms = 0;
            BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
            if (i > 0 || reps == 1) times.push_back(ms * 1e-3);
          }
          (tc ? row.mma_s : row.fma_s) = Median(times);
        }
        std::vector<float> ym(T * yw), yf(T * yw);
        BENCH_CUDA(cudaMemcpy(ym.data(), y_mma, ym.size() * 4, cudaMemcpyDeviceToHost));
        BENCH_CUDA(cudaMemcpy(yf.data(), y_fma, yf.size() * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        for (size_t i = 0; i < ym.size(); ++i) {
          num = std::max(num, static_cast<double>(std::fabs(ym[i] - yf[i])));
          den = std::max(den, static_cast<double>(std::fabs(yf[i])));
        }
        row.rel_diff = num / std::max(den, 1e-30);
        std::printf("%s rings, start %5lld T %6lld: tensor cores %8.3f ms (%6.1f TFLOP/s)  "
                    "fma %9.3f ms (%5.1f TFLOP/s)  speedup %5.1fx  max diff / max |y| %.2e\n",
                    ring_type == DType::kF32 ? "f32 " : "bf16", static_cast<long long>(start),
                    static_cast<long long>(T), row.mma_s * 1e3, row.flops / row.mma_s / 1e12,
                    row.fma_s * 1e3, row.flops / row.fma_s / 1e12, row.fma_s / row.mma_s,
                    row.rel_diff);
        std::fflush(stdout);
        rows.push_back(row);
      }
    }
  }

  std::FILE* f = OpenJsonReport(out_path, "swa_prefill", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"shape\": {\"n_head\": 18, \"head_size\": 128, \"window\": 2048},\n");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"ring\": \"%s\", \"start\": %lld, \"tokens\": %lld, "
                 "\"tensor_core_s\": %.6e, \"fma_s\": %.6e, \"attention_flops\": %.6e, "
                 "\"max_diff_over_max_abs\": %.3e}%s\n",
                 r.ring == DType::kF32 ? "f32" : "bf16", static_cast<long long>(r.start),
                 static_cast<long long>(r.tokens), r.mma_s, r.fma_s, r.flops, r.rel_diff,
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
