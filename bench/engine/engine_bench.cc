// engine_bench: how much the engine itself costs per step, with a model runner that returns its
// sampled tokens instantly (SyntheticModelRunner in instant mode: no logits, no sampling), so
// everything measured is the engine's own work: scheduling, slot bookkeeping, stop checks,
// incremental detokenization, stop-string matching and handing tokens to the streams.
//
// For each concurrency level C, C requests (8-token prompts, one stop string, EOS ignored) are
// submitted at once and consumed by one client thread; the table reports generated tokens/s
// (wall clock, submit to last terminal event), and the engine thread's own time per step
// (StepReport::engine_seconds: iteration time minus runner time; mean, p50, p99), and the engine
// thread's CPU time per iteration with the tokens/s that CPU time alone would allow (robust on
// a shared machine, where wall-clock figures include time stolen by other processes).
//
// Usage: engine_bench [--levels=1,64,256,1024] [--tokens=1000000] [--json=engine_bench.json]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "engine/byte_tokenizer.h"
#include "engine/engine.h"
#include "engine/synthetic_model_runner.h"
#include "nlohmann/json.hpp"

namespace deltaserve {
namespace {

class StepRecorder : public EngineObserver {
 public:
  void OnStep(const StepReport& s) override {
    engine_us.push_back(s.engine_seconds * 1e6);
    runner_us.push_back(s.runner_seconds * 1e6);
    batch.push_back(s.batch_size);
    // The engine thread's CPU time between consecutive steps: one whole iteration, immune to
    // time stolen by other processes (the wall-clock figures above are not).
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    const double now_us = ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
    if (last_cpu_us > 0) cpu_us.push_back(now_us - last_cpu_us);
    last_cpu_us = now_us;
  }
  std::vector<double> engine_us, runner_us, cpu_us;
  double last_cpu_us = 0;
  std::vector<int> batch;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

struct Result {
  int concurrency = 0;
  int64_t tokens = 0;
  int64_t steps = 0;
  double wall_s = 0;
  double tokens_per_s = 0;
  double engine_us_mean = 0, engine_us_p50 = 0, engine_us_p99 = 0;
  double engine_us_per_token = 0;
  double cpu_us_per_step = 0;
  double cpu_tokens_per_s = 0;  // tokens per second of engine-thread CPU time
  double mean_batch = 0;
};

Result RunLevel(int concurrency, int64_t total_tokens) {
  SyntheticRunnerOptions opts;
  opts.instant = true;
  opts.num_slots = concurrency;
  EngineConfig config;
  config.max_batch_sequences = concurrency;
  config.max_step_tokens = std::max<int64_t>(2048, 16 * concurrency);
  config.max_waiting = concurrency;
  config.max_new_tokens_cap = 1 << 24;
  auto recorder = std::make_shared<StepRecorder>();
  recorder->engine_us.reserve(1 << 20);
  recorder->runner_us.reserve(1 << 20);
  recorder->batch.reserve(1 << 20);
  auto runner = SyntheticModelRunner::Create(opts);
  if (!runner.ok()) {
    std::fprintf(stderr, "runner: %s\n", runner.status().ToString().c_str());
    std::exit(1);
  }
  auto engine = Engine::Create(config, std::move(*runner), std::make_shared<ByteTokenizer>(),
                               recorder);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine: %s\n", engine.status().ToString().c_str());
    std::exit(1);
  }
  const int64_t per_request = std::max<int64_t>(64, total_tokens / concurrency);

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < concurrency; ++i) {
    GenerationRequest r;
    r.id = absl::StrCat("bench-", i);
    r.prompt_tokens = {72, 101, 108, 108, 111, 44, 32, static_cast<int32_t>(i % 256)};
    r.sampling.temperature = 0.0f;
    r.stopping.max_new_tokens = static_cast<int32_t>(per_request);
    r.stopping.ignore_eos = true;
    r.stopping.stop_strings = {"\n\nUser:"};
    auto s = (*engine)->Submit(std::move(r));
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.status().ToString().c_str());
      std::exit(1);
    }
    streams.push_back(*s);
  }
  // One client thread drains every stream.
  int64_t generated = 0;
  std::vector<bool> done(streams.size(), false);
  size_t remaining = streams.size();
  while (remaining > 0) {
    bool any = false;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (done[i]) continue;
      while (auto e = streams[i]->Next(absl::ZeroDuration())) {
        any = true;
        if (e->finished) {
          generated += e->usage.generated_tokens;
          done[i] = true;
          --remaining;
          break;
        }
      }
    }
    if (!any) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (*engine)->Shutdown();

  Result r;
  r.concurrency = concurrency;
  r.tokens = generated;
  r.steps = static_cast<int64_t>(recorder->engine_us.size());
  r.wall_s = wall;
  r.tokens_per_s = generated / wall;
  r.engine_us_mean = std::accumulate(recorder->engine_us.begin(), recorder->engine_us.end(), 0.0) /
                     std::max<int64_t>(1, r.steps);
  r.engine_us_p50 = Percentile(recorder->engine_us, 0.5);
  r.engine_us_p99 = Percentile(recorder->engine_us, 0.99);
  const double total_batch = std::accumulate(recorder->batch.begin(), recorder->batch.end(), 0.0);
  r.mean_batch = total_batch / std::max<int64_t>(1, r.steps);
  r.engine_us_per_token = r.engine_us_mean / std::max(1.0, r.mean_batch);
  const double cpu_total = std::accumulate(recorder->cpu_us.begin(), recorder->cpu_us.end(), 0.0);
  r.cpu_us_per_step = cpu_total / std::max<size_t>(1, recorder->cpu_us.size());
  r.cpu_tokens_per_s = r.mean_batch / std::max(1e-9, r.cpu_us_per_step) * 1e6;
  return r;
}

std::string CpuName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

}  // namespace
}  // namespace deltaserve

int main(int argc, char** argv) {
  using namespace deltaserve;
  std::vector<int> levels = {1, 64, 256, 1024};
  int64_t tokens = 1000000;
  std::string json_path = "engine_bench.json";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--levels=", 0) == 0) {
      levels.clear();
      for (absl::string_view p : absl::StrSplit(a.substr(9), ',')) {
        levels.push_back(std::stoi(std::string(p)));
      }
    } else if (a.rfind("--tokens=", 0) == 0) {
      tokens = std::stoll(a.substr(9));
    } else if (a.rfind("--json=", 0) == 0) {
      json_path = a.substr(7);
    } else {
      std::fprintf(stderr,
                   "usage: engine_bench [--levels=1,64,256,1024] [--tokens=N] [--json=PATH]\n");
      return 2;
    }
  }
  const std::string cpu = CpuName();
  std::printf("engine_bench: instant runner, one client thread, CPU %s, %u hardware threads\n",
              cpu.c_str(), std::thread::hardware_concurrency());
  std::printf("%11s %10s %8s %7s %10s %14s %12s %12s %13s %13s %14s\n", "concurrency", "tokens",
              "steps", "batch", "tokens/s", "engine us/step", "p50 us/step", "p99 us/step",
              "engine us/tok", "cpu us/step", "cpu tokens/s");
  nlohmann::json out;
  out["benchmark"] = "engine_bench";
  out["runner"] = "synthetic instant";
  out["cpu"] = cpu;
  out["hardware_threads"] = std::thread::hardware_concurrency();
  out["results"] = nlohmann::json::array();
  for (int c : levels) {
    const Result r = RunLevel(c, tokens);
    std::printf("%11d %10lld %8lld %7.1f %10.0f %14.1f %12.1f %12.1f %13.3f %13.1f %14.0f\n",
                r.concurrency, static_cast<long long>(r.tokens), static_cast<long long>(r.steps),
                r.mean_batch, r.tokens_per_s, r.engine_us_mean, r.engine_us_p50, r.engine_us_p99,
                r.engine_us_per_token, r.cpu_us_per_step, r.cpu_tokens_per_s);
    std::fflush(stdout);
    out["results"].push_back({{"concurrency", r.concurrency},
                              {"generated_tokens", r.tokens},
                              {"steps", r.steps},
                              {"mean_batch", r.mean_batch},
                              {"wall_seconds", r.wall_s},
                              {"tokens_per_second", r.tokens_per_s},
                              {"engine_us_per_step_mean", r.engine_us_mean},
                              {"engine_us_per_step_p50", r.engine_us_p50},
                              {"engine_us_per_step_p99", r.engine_us_p99},
                              {"engine_us_per_token", r.engine_us_per_token},
                              {"engine_thread_cpu_us_per_step", r.cpu_us_per_step},
                              {"tokens_per_engine_cpu_second", r.cpu_tokens_per_s}});
  }
  std::ofstream f(json_path);
  f << out.dump(2) << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}
