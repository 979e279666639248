// cpu_model_bench: throughput of the fp32 CPU model (engine/cpu_model.h) on a model directory.
// Measures one prefill of --prefill tokens and decode steps of --batches sequences (one token
// each, logits for all), prints a table and writes JSON. Decode of small batches is bound by
// reading the fp32 weights once per step, so the table also reports the weight bytes read per
// second.
//
//   cpu_model_bench --model models/default --threads 2 --prefill 256 --batches 1,8,32
//       --steps 10 --state fp32 --json cpu_model_bench.json   (one command line)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/cpu_model.h"
#include "engine/model_weights.h"
#include "engine/runner_factory.h"
#include "nlohmann/json.hpp"

namespace deltaserve {
namespace {

struct Args {
  std::string model = "models/default";
  int threads = 0;
  int prefill = 256;
  std::vector<int> batches = {1, 8, 32};
  int steps = 10;
  std::string state = "fp32";
  std::string json = "cpu_model_bench.json";
};

bool Parse(int argc, char** argv, Args* a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") {
      a->model = v;
    } else if (k == "--threads") {
      if (!absl::SimpleAtoi(v, &a->threads)) return false;
    } else if (k == "--prefill") {
      if (!absl::SimpleAtoi(v, &a->prefill)) return false;
    } else if (k == "--steps") {
      if (!absl::SimpleAtoi(v, &a->steps)) return false;
    } else if (k == "--state") {
      a->state = v;
    } else if (k == "--json") {
      a->json = v;
    } else if (k == "--batches") {
      a->batches.clear();
      for (absl::string_view p : absl::StrSplit(v, ',')) {
        int b;
        if (!absl::SimpleAtoi(p, &b) || b < 1) return false;
        a->batches.push_back(b);
      }
    } else {
      return false;
    }
  }
  return argc % 2 == 1 && a->prefill >= 1 && a->steps >= 1;
}

std::string CpuName() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int Main(int argc, char** argv) {
  Args a;
  if (!Parse(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: cpu_model_bench [--model DIR] [--threads N] [--prefill T] "
                 "[--batches 1,8,32] [--steps N] [--state fp32|bf16] [--json PATH]\n");
    return 2;
  }
  auto dtype = ParseStateDtype(a.state);
  auto config = ModelConfig::LoadFromDir(a.model);
  if (!dtype.ok() || !config.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string((dtype.ok() ? config.status() : dtype.status()).message()).c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto weights = ModelWeights::Load(*config, a.model);
  if (!weights.ok()) {
    std::fprintf(stderr, "%s\n", std::string(weights.status().message()).c_str());
    return 1;
  }
  // Bytes of fp32 weights a decode step reads: everything but the embedding table.
  const double weight_bytes = 4.0 * ((*weights)->NumParams() - (*weights)->wte().numel());
  auto model = CpuModel::Create(**weights, *dtype, a.threads);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  weights->reset();
  const double load_s = Seconds(t0);
  CpuModel& m = **model;
  const int max_batch = *std::max_element(a.batches.begin(), a.batches.end());
  std::vector<std::vector<int64_t>> slots(std::max(1, max_batch),
                                          std::vector<int64_t>(m.layout().slot_bytes() / 8 + 1));
  auto slot = [&](int i) { return reinterpret_cast<std::byte*>(slots[i].data()); };
  std::vector<int32_t> prompt(a.prefill);
  for (int i = 0; i < a.prefill; ++i) prompt[i] = (i * 7919) % m.config().vocab_size;

  nlohmann::json out;
  out["benchmark"] = "cpu_model";
  out["device"] = CpuName();
  out["threads"] = m.threads();
  out["model_dir"] = a.model;
  out["state_dtype"] = a.state;
  out["load_seconds"] = load_s;
  out["weight_bytes_per_step"] = weight_bytes;
  out["results"] = nlohmann::json::array();
  std::vector<float> logits;
  std::printf("model %s, %d threads, state %s, load %.2f s, %.1f MB fp32 weights per step\n",
              a.model.c_str(), m.threads(), a.state.c_str(), load_s, weight_bytes / 1e6);
  std::printf("%-8s %6s %8s %12s %12s %12s\n", "phase", "batch", "tokens", "ms/step", "tokens/s",
              "weights GB/s");

  std::vector<CpuModel::Sequence> seqs = {{slot(0), prompt, true}};
  t0 = std::chrono::steady_clock::now();
  if (absl::Status s = m.Forward(seqs, false, &logits); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  double dt = Seconds(t0);
  std::printf("%-8s %6d %8d %12.2f %12.1f %12.2f\n", "prefill", 1, a.prefill, dt * 1e3,
              a.prefill / dt, weight_bytes / dt / 1e9);
  out["results"].push_back({{"phase", "prefill"},
                            {"batch", 1},
                            {"tokens", a.prefill},
                            {"seconds", dt},
                            {"tokens_per_second", a.prefill / dt}});

  for (int b : a.batches) {
    std::vector<int32_t> toks(b);
    seqs.clear();
    for (int i = 0; i < b; ++i) {
      toks[i] = (i * 31 + 5) % m.config().vocab_size;
      seqs.push_back({slot(i), std::span<const int32_t>(&toks[i], 1), true});
    }
    (void)m.Forward(seqs, false, &logits);  // warm-up: grows scratch for this batch
    t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < a.steps; ++s) (void)m.Forward(seqs, false, &logits);
    dt = Seconds(t0) / a.steps;
    std::printf("%-8s %6d %8d %12.2f %12.1f %12.2f\n", "decode", b, b, dt * 1e3, b / dt,
                weight_bytes / dt / 1e9);
    out["results"].push_back({{"phase", "decode"},
                              {"batch", b},
                              {"seconds_per_step", dt},
                              {"tokens_per_second", b / dt},
                              {"weight_gb_per_second", weight_bytes / dt / 1e9}});
  }
  std::ofstream(a.json) << out.dump(2) << "\n";
  std::printf("wrote %s\n", a.json.c_str());
  return 0;
}

}  // namespace
}  // namespace deltaserve

int main(int argc, char** argv) { return deltaserve::Main(argc, argv); }
