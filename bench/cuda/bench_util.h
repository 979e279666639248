// Shared pieces of the CUDA benchmarks: device description, the device-to-device copy ceiling,
// CUDA-graph timing (median of replays), the opening of a JSON report, and list filters given
// as `--flag=a,b` arguments.
//
// Thread-safety: single-threaded benchmark programs only.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace deltaserve::bench {

#define BENCH_CUDA(expr)                                                          \
  do {                                                                            \
    cudaError_t e_ = (expr);                                                      \
    if (e_ != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,           \
                   cudaGetErrorString(e_));                                       \
      std::exit(2);                                                               \
    }                                                                             \
  } while (0)

struct DeviceInfo {
  std::string name;
  int sms = 0;
  int64_t l2_bytes = 0;
  int64_t mem_bytes = 0;
  int cc_major = 0, cc_minor = 0;
};

inline DeviceInfo GetDeviceInfo() {
  cudaDeviceProp p;
  BENCH_CUDA(cudaGetDeviceProperties(&p, 0));
  return {p.name, p.multiProcessorCount, p.l2CacheSize, static_cast<int64_t>(p.totalGlobalMem),
          p.major, p.minor};
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Device-to-device cudaMemcpy of `bytes`, counting bytes read plus written; bytes/second.
inline double CopyBandwidth(size_t bytes, int reps = 30) {
  void *a = nullptr, *b = nullptr;
  BENCH_CUDA(cudaMalloc(&a, bytes));
  BENCH_CUDA(cudaMalloc(&b, bytes));
  BENCH_CUDA(cudaMemset(a, 1, bytes));
  BENCH_CUDA(cudaMemset(b, 2, bytes));
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < reps + 3; ++i) {
    BENCH_CUDA(cudaEventRecord(e0));
    BENCH_CUDA(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice));
    BENCH_CUDA(cudaEventRecord(e1));
    BENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / Median(t);
}

// Captures `body` (which enqueues `launches` kernels on `stream`) into a graph, replays it
// `reps` times and returns the median seconds per launch.
inline double TimeGraph(cudaStream_t stream, const std::function<void()>& body, int launches,
                        int reps = 15) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  BENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  body();
  BENCH_CUDA(cudaStreamEndCapture(stream, &graph));
  BENCH_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < reps + 2; ++i) {
    BENCH_CUDA(cudaEventRecord(e0, stream));
    BENCH_CUDA(cudaGraphLaunch(exec, stream));
    BENCH_CUDA(cudaEventRecord(e1, stream));
    BENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) t.push_back(ms * 1e-3 / launches);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return Median(t);
}

// Median seconds of one stream launch of `body`, events around it (includes launch overhead).
inline double TimeSingle(cudaStream_t stream, const std::function<void()>& body, int reps = 50) {
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < reps + 3; ++i) {
    BENCH_CUDA(cudaEventRecord(e0, stream));
    body();
    BENCH_CUDA(cudaEventRecord(e1, stream));
    BENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return Median(t);
}

inline std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

// Opens `path` for a benchmark's JSON report and writes its opening,
//   {"benchmark": <benchmark>, "device": <device>,
// one field per line; the caller writes the other fields and the closing brace. Null, with the
// reason on stderr, when the file cannot be opened.
inline std::FILE* OpenJsonReport(const std::string& path, const char* benchmark,
                                 const std::string& device) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::perror(path.c_str());
    return nullptr;
  }
  std::fprintf(f, "{\n  \"benchmark\": \"%s\",\n  \"device\": \"%s\",\n", benchmark,
               JsonEscape(device).c_str());
  return f;
}

// Comma-separated list after `--flag=`; empty when the flag is absent (no filter).
inline std::vector<std::string> ListFlag(int argc, char** argv, const char* flag) {
  std::vector<std::string> out;
  const size_t n = std::strlen(flag);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], flag, n) == 0 && argv[i][n] == '=') {
      std::stringstream ss(argv[i] + n + 1);
      std::string item;
      while (std::getline(ss, item, ',')) {
        if (!item.empty()) out.push_back(item);
      }
    }
  }
  return out;
}

// Whether `v` passes `filter` (a ListFlag result; empty selects everything).
inline bool Selected(const std::vector<std::string>& filter, const std::string& v) {
  return filter.empty() || std::find(filter.begin(), filter.end(), v) != filter.end();
}

}  // namespace deltaserve::bench
