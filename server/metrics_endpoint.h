// MetricsEndpoint: the Prometheus HTTP endpoint (GET /metrics) on its own port, serving
// ServerMetrics' text exposition. A deliberately small HTTP/1.1 server on one thread with a
// normal stack: prometheus-cpp's civetweb exposer starts its threads with a fixed 100 KB stack,
// which cannot hold the static TLS that libcublasLt brings into a CUDA build, so it failed there.
//
// Serves one connection at a time (scrapes are rare and small); each connection has a 5 s
// read/write timeout, so a stalled client delays, but never blocks, later scrapes.
// Thread-safety: Start and the destructor from one thread; the serving thread reads `metrics`,
// which is thread-safe. Stops listening (and joins its thread) when destroyed.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/metrics.h"

namespace deltaserve {

class MetricsEndpoint {
 public:
  // Binds host:port (port 0: any free port); UNAVAILABLE naming the address when it cannot.
  // `metrics` must outlive the endpoint.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& host, int port,
                                                               ServerMetrics* metrics);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  int port() const { return port_; }

 private:
  MetricsEndpoint(int listen_fd, int port, ServerMetrics* metrics);
  void Serve();
  void HandleConnection(int fd);

  const int listen_fd_;
  const int port_;
  ServerMetrics* const metrics_;
  int wake_pipe_[2] = {-1, -1};  // written by the destructor to stop Serve()
  std::thread thread_;
};

}  // namespace deltaserve
