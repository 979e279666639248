// End-to-end decode benchmark of the CUDA runner on the two 1.3B reference configurations
// (MODEL_SPEC.md section 4) with random bf16 weights generated on the device: tokens/s at batch
// 1, 16, 64, 256 (CUDA-graph decode passes, positions past the SWA window so every SWA layer
// reads a full ring), and the ratio to the roofline = (weight bytes + state bytes a step must
// move) / copy bandwidth measured in the same run.
//
// Usage: decode_e2e_bench [out.json] [--quick] [--batches-1-256]
// (--quick: fewer timed passes; --batches-1-256: batch 1 and 256 only)
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/device_weights.h"
#include "engine/model_config.h"
#include "kernels/cuda/elementwise.h"

using namespace deltaserve;
using namespace deltaserve::bench;

namespace {

ModelConfig Config(bool hybrid) {
  ModelConfig c;  // defaults: gdn2_1.3B
  c.vocab_size = 32000;
  c.padded_vocab_size = 32000;
  if (hybrid) {
    c.gdn2_per_layer = 2;
    c.intermediate_size = 6784;
  }
  return c;
}

struct Row {
  std::string model, state, note, kernel = "auto";
  int batch = 0;
  double step_ms = 0, tokens_per_s = 0, weight_bytes = 0, state_bytes = 0, roofline_ms = 0,
         ratio = 0;
};

// State bytes one decode step moves for `batch` slots whose SWA rings are full.
double StateBytes(const ModelConfig& c, const StateLayout& L, int batch) {
  const Gdn2Config& g = c.gdn2;
  const double rec = static_cast<double>(L.recurrent_elems()) * StateDtypeBytes(L.state_dtype());
  const double conv = static_cast<double>(g.conv_size - 1) * (2 * g.key_dim() + g.value_dim()) * 4;
  const double gdn = 2 * (rec + conv);
  const double ring_read = 2.0 * c.swa.local_window * c.swa.n_query_groups * c.swa.head_size * 4;
  const double ring_write = 2.0 * c.swa.n_query_groups * c.swa.head_size * 4;
  return batch * (c.NumGdn2Layers() * gdn + c.NumSwaLayers() * (ring_read + ring_write));
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "decode_e2e_bench.json";
  bool quick = false, two_batches = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--batches-1-256") == 0) {
      two_batches = true;
    } else {
      out_path = argv[i];
    }
  }
  const DeviceInfo dev = GetDeviceInfo();
  std::printf("device: %s, %d SMs, %.1f GB\n", dev.name.c_str(), dev.sms, dev.mem_bytes / 1e9);
  const double copy_bw = CopyBandwidth(size_t{1} << 30);
  std::printf("device-to-device copy: %.3f TB/s\n", copy_bw / 1e12);

  std::vector<Row> rows;
  for (bool hybrid : {false, true}) {
    const ModelConfig cfg = Config(hybrid);
    for (int variant = 0; variant < 5; ++variant) {
      // 0: fp32 state, 1: bf16 state (automatic GDN-2 kernel choice); pure model only, fp32
      // state: 2: fused kernel, plain launch; 3: prepared kernels; 4: streamed kernels.
      if (variant >= 2 && hybrid) continue;
      const StateDtype sd = variant == 1 ? StateDtype::kBF16 : StateDtype::kF32;
      for (int batch : {1, 16, 64, 256}) {
        if (two_batches && batch != 1 && batch != 256) continue;
        if (variant == 2 && batch == 256) continue;  // fused is the small-batch arrangement
        if (variant >= 3 && batch == 1) continue;    // the two-kernel ones are large-batch
        Row row;
        static const char* const kNames[] = {"auto", "auto", "fused", "prepared", "streamed"};
        row.kernel = kNames[variant];
        row.model = hybrid ? "swa_gdn2_1.3B" : "gdn2_1.3B";
        row.state = sd == StateDtype::kF32 ? "f32" : "bf16";
        row.batch = batch;
        const StateLayout layout(cfg, sd);
        const double pool = static_cast<double>(layout.slot_bytes()) * batch;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        if (pool + 4e9 > static_cast<double>(free_b)) {
          row.note = "state pool does not fit in device memory";
          std::printf("%s %s batch %d: skipped (%.1f GB pool)\n", row.model.c_str(),
                      row.state.c_str(), batch, pool / 1e9);
          rows.push_back(row);
          continue;
        }
        auto w = DeviceWeights::Random(cfg, 42);
        if (!w.ok()) {
          std::fprintf(stderr, "weights: %s\n", std::string(w.status().message()).c_str());
          return 2;
        }
        row.weight_bytes = static_cast<double>((*w)->step_read_bytes());
        CudaRunnerOptions opts;
        opts.state_dtype = sd;
        opts.num_slots = batch;
        opts.max_rows = 256;
        opts.graph_batch_sizes = {batch};
        opts.gdn2_kernel = variant == 2   ? CudaRunnerOptions::Gdn2Kernel::kFused
                           : variant == 3 ? CudaRunnerOptions::Gdn2Kernel::kPrepared
                           : variant == 4 ? CudaRunnerOptions::Gdn2Kernel::kStreamed
                                          : CudaRunnerOptions::Gdn2Kernel::kAuto;
        opts.gdn2_overlap_launch = variant != 2;
        auto r = CudaModelRunner::Create(*std::move(w), opts);
        if (!r.ok()) {
          std::fprintf(stderr, "runner: %s\n", std::string(r.status().message()).c_str());
          return 2;
        }
        CudaModelRunner& runner = **r;
        // Random state (never zeros), positions past the window (full SWA rings).
        DeviceStateStorage& st = runner.device_state();
        BENCH_CUDA(cudaDeviceSynchronize());
        if (!cuda::LaunchFillRandom(st.data(), cuda::DType::kF32,
                                    static_cast<int64_t>(st.slot_bytes() * batch / 4), 7, 0.02f,
                                    0.0f, nullptr).ok())
          return 2;
        for (int s = 0; s < batch; ++s) {
          for (int li = 0; li < cfg.n_layer; ++li) {
            if (!cfg.IsGdn2Layer(li) || sd != StateDtype::kBF16) continue;
            if (!cuda::LaunchFillRandom(
                     st.data() + s * st.slot_bytes() + layout.layer(li).gdn2.recurrent,
                     cuda::DType::kBF16, static_cast<int64_t>(layout.recurrent_elems()),
                     100 + s * 64 + li, 0.02f, 0.0f, nullptr).ok())
              return 2;
          }
          const int64_t pos = 3 * cfg.swa.local_window + s;
          BENCH_CUDA(cudaMemcpy(st.data() + s * st.slot_bytes() + layout.position_offset(), &pos,
                                8, cudaMemcpyHostToDevice));
        }
        BENCH_CUDA(cudaDeviceSynchronize());
        std::vector<int> slots(batch);
        std::iota(slots.begin(), slots.end(), 0);
        std::mt19937 rng(batch);
        std::shuffle(slots.begin(), slots.end(), rng);
        std::vector<int32_t> toks(batch);
        for (auto& t : toks) t = static_cast<int32_t>(rng() % cfg.vocab_size);
        const int warm = 3, steps = quick ? 5 : (batch >= 64 && hybrid ? 10 : 20);
        for (int i = 0; i < warm; ++i) {
          absl::Status s = runner.DecodePass(slots, toks);
          if (!s.ok()) {
            std::fprintf(stderr, "decode: %s\n", std::string(s.message()).c_str());
            return 3;
          }
        }
        if (!runner.Synchronize().ok()) return 3;
        cudaEvent_t e0, e1;
        BENCH_CUDA(cudaEventCreate(&e0));
        BENCH_CUDA(cudaEventCreate(&e1));
        std::vector<double> times;
        for (int i = 0; i < steps; ++i) {
          BENCH_CUDA(cudaEventRecord(e0, runner.stream()));
          if (!runner.DecodePass(slots, toks).ok()) return 3;
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
        row.roofline_ms = (row.weight_bytes + row.state_bytes) / copy_bw * 1e3;
        row.ratio = row.roofline_ms / row.step_ms;
        std::printf("%s %s %s batch %d: %.3f ms/step, %.0f tok/s, roofline %.3f ms, ratio %.3f\n",
                    row.model.c_str(), row.kernel.c_str(), row.state.c_str(), batch, row.step_ms, row.tokens_per_s,
                    row.roofline_ms, row.ratio);
        std::fflush(stdout);
        rows.push_back(row);
      }
    }
  }

  FILE* f = std::fopen(out_path.c_str(), "w");
  if (f == nullptr) return 1;
  std::fprintf(f, "{\n  \"benchmark\": \"decode_end_to_end\",\n  \"device\": \"%s\",\n",
               JsonEscape(dev.name).c_str());
  std::fprintf(f, "  \"copy_bw_bytes_per_s\": %.6e,\n", copy_bw);
  std::fprintf(f, "  \"method\": \"random bf16 weights on device; one decode pass = CUDA graph replay incl. lm_head, no sampling; median of timed passes (events); SWA rings full (position > window); roofline = (weight bytes read once + state bytes read+written) / copy bandwidth\",\n");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"model\": \"%s\", \"gdn2_kernel\": \"%s\", \"state\": \"%s\", \"batch\": %d, \"ms_per_step\": %.4f, "
                 "\"tokens_per_s\": %.1f, \"weight_bytes\": %.0f, \"state_bytes\": %.0f, "
                 "\"roofline_ms\": %.4f, \"ratio_to_roofline\": %.4f, \"note\": \"%s\"}%s\n",
                 r.model.c_str(), r.kernel.c_str(), r.state.c_str(), r.batch, r.step_ms, r.tokens_per_s,
                 r.weight_bytes, r.state_bytes, r.roofline_ms, r.ratio, r.note.c_str(),
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);

  std::printf("\n%-14s %-8s %-5s %6s %10s %10s %11s %7s\n", "model", "kernel", "state", "batch", "ms/step",
              "tok/s", "roofline ms", "ratio");
  for (const Row& r : rows) {
    if (!r.note.empty()) {
      std::printf("%-14s %-8s %-5s %6d   (%s)\n", r.model.c_str(), r.kernel.c_str(), r.state.c_str(), r.batch,
                  r.note.c_str());
      continue;
    }
    std::printf("%-14s %-8s %-5s %6d %10.3f %10.0f %11.3f %7.3f\n", r.model.c_str(), r.kernel.c_str(), r.state.c_str(),
                r.batch, r.step_ms, r.tokens_per_s, r.roofline_ms, r.ratio);
  }
  return 0;
}
