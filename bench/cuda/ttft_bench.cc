// Time-to-first-token benchmark of the CUDA runner on the two 1.3B reference configurations
// (MODEL_SPEC.md section 4, random bf16 weights generated on the device): wall time from the
// runner's Step call until the first sampled token is back on the host, for one prompt of
// 512, 4096 and 32768 tokens on a freshly reset slot, fp32 state. Two feeds of the prompt:
//   whole  - one Step carrying the whole prompt (what an idle server can do with a large step
//            budget; the runner packs it into passes of prefill_pass_tokens rows);
//   chunks - the prompt in Steps of `--chunk` tokens (default 512, EngineConfig::prefill_chunk's
//            default), the last one sampling: what the engine's chunked scheduling does when
//            this request is alone.
// Host work inside Step (packing, launches, sampling copy-back) is included; tokenization,
// scheduling and gRPC are not. Median of `--reps` timed runs after one warm-up run.
//
// Usage: ttft_bench [out.json] [--chunk=N] [--pass=N] [--reps=N] [--pure-only]
//                   [--precision=fp32|tf32|bf16]
//   --precision  the chunked recurrence's products (CudaRunnerOptions::prefill_precision;
//                default fp32: fp32-level 3xTF32)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/reference_models.h"
#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/cuda_runner_factory.h"
#include "engine/cuda/device_weights.h"
#include "engine/model_config.h"

using namespace deltaserve;
using namespace deltaserve::bench;

namespace {

struct Row {
  std::string model, feed;
  int64_t tokens = 0, chunk = 0;
  double ms = 0;
};

// Feeds `prompt` to a reset slot 0 in steps of `chunk` tokens (the last one samples); returns
// the wall time in ms, or a negative value on error.
double Prefill(CudaModelRunner& runner, const std::vector<int32_t>& prompt, int64_t chunk) {
  if (!runner.state().Reset(0).ok() || !runner.Synchronize().ok()) return -1;
  SamplingParams sp;
  sp.temperature = 0.0f;
  SamplerState ss;
  ss.prompt_tokens = prompt;
  std::vector<SampledToken> out;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t pos = 0; pos < static_cast<int64_t>(prompt.size()); pos += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(prompt.size()) - pos);
    StepBatch batch;
    SequenceStep seq;
    seq.slot = 0;
    seq.tokens = std::span<const int32_t>(prompt.data() + pos, static_cast<size_t>(n));
    seq.sample = pos + n == static_cast<int64_t>(prompt.size());
    seq.sampling = &sp;
    seq.sampler_state = &ss;
    batch.seqs.push_back(seq);
    out.clear();
    absl::Status st = runner.Step(batch, &out);
    if (!st.ok()) {
      std::fprintf(stderr, "step: %s\n", std::string(st.message()).c_str());
      return -1;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (out.size() != 1 || out[0].token < 0) return -1;
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "ttft_bench.json";
  int64_t chunk = 512, pass = 0;
  int reps = 5;
  bool pure_only = false;
  std::string precision = "fp32";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--chunk=", 0) == 0) {
      chunk = std::stoll(arg.substr(8));
    } else if (arg.rfind("--pass=", 0) == 0) {
      pass = std::stoll(arg.substr(7));
    } else if (arg.rfind("--reps=", 0) == 0) {
      reps = std::stoi(arg.substr(7));
    } else if (arg == "--pure-only") {
      pure_only = true;
    } else if (arg.rfind("--precision=", 0) == 0) {
      precision = arg.substr(12);
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return 2;
    } else {
      out_path = arg;
    }
  }
  if (chunk < 1 || reps < 1 || pass < 0) {
    std::fprintf(stderr, "--chunk and --reps must be >= 1, --pass >= 0\n");
    return 2;
  }
  const absl::StatusOr<PrefillPrecision> products = ParsePrefillPrecision(precision);
  if (!products.ok()) {
    std::fprintf(stderr, "--precision: %s\n", std::string(products.status().message()).c_str());
    return 2;
  }
  const DeviceInfo dev = GetDeviceInfo();
  std::printf("device: %s, %d SMs\n", dev.name.c_str(), dev.sms);

  const std::vector<int64_t> lengths = {512, 4096, 32768};
  std::vector<Row> rows;
  for (bool hybrid : {false, true}) {
    if (hybrid && pure_only) continue;
    const ModelConfig cfg = ReferenceConfig(hybrid);
    auto w = DeviceWeights::Random(cfg, 42);
    if (!w.ok()) {
      std::fprintf(stderr, "weights: %s\n", std::string(w.status().message()).c_str());
      return 2;
    }
    CudaRunnerOptions opts;
    opts.num_slots = 1;
    opts.max_step_tokens = lengths.back();
    opts.graph_batch_sizes = {1};
    if (pass > 0) opts.prefill_pass_tokens = pass;
    opts.prefill_precision = CudaPrefillPrecision(*products);
    auto r = CudaModelRunner::Create(*std::move(w), opts);
    if (!r.ok()) {
      std::fprintf(stderr, "runner: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    CudaModelRunner& runner = **r;
    std::mt19937 rng(1);
    for (int64_t T : lengths) {
      std::vector<int32_t> prompt(static_cast<size_t>(T));
      for (auto& t : prompt) t = static_cast<int32_t>(rng() % cfg.vocab_size);
      for (const bool whole : {true, false}) {
        if (!whole && chunk >= T) continue;  // the same feed as whole
        const int64_t feed_chunk = whole ? T : chunk;
        Row row;
        row.model = hybrid ? "swa_gdn2_1.3B" : "gdn2_1.3B";
        row.feed = whole ? "whole" : "chunks";
        row.tokens = T;
        row.chunk = feed_chunk;
        std::vector<double> times;
        for (int i = 0; i <= reps; ++i) {
          const double ms = Prefill(runner, prompt, feed_chunk);
          if (ms < 0) return 3;
          if (i > 0) times.push_back(ms);  // run 0 warms up
        }
        row.ms = Median(times);
        std::printf("%-14s %6lld tokens, %-6s (steps of %6lld): TTFT %8.2f ms  (%.2f M tok/s)\n",
                    row.model.c_str(), static_cast<long long>(T), row.feed.c_str(),
                    static_cast<long long>(feed_chunk), row.ms, T / row.ms / 1e3);
        std::fflush(stdout);
        rows.push_back(row);
      }
    }
  }

  std::FILE* f = OpenJsonReport(out_path, "ttft", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f,
               "  \"method\": \"CudaModelRunner::Step wall time until the first token is on the "
               "host, fp32 state, random bf16 weights, reset slot, median of %d runs after one "
               "warm-up\",\n  \"prefill_pass_tokens\": %lld,\n  \"prefill_precision\": \"%s\",\n"
               "  \"rows\": [\n",
               reps, static_cast<long long>(pass), precision.c_str());
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"model\": \"%s\", \"feed\": \"%s\", \"tokens\": %lld, \"step_tokens\": "
                 "%lld, \"ttft_ms\": %.4f}%s\n",
                 r.model.c_str(), r.feed.c_str(), static_cast<long long>(r.tokens),
                 static_cast<long long>(r.chunk), r.ms, i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
