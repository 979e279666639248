// MetricsEndpoint: the Prometheus HTTP endpoint (GET /metrics) on its own port, serving a
// ServerMetrics collectable. Stops listening when destroyed.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "server/metrics.h"

namespace deltaserve {

class MetricsEndpoint {
 public:
  // Binds host:port; UNAVAILABLE with the address when it cannot. `metrics` must outlive it.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& host, int port,
                                                               ServerMetrics* metrics);
  int port() const { return port_; }

 private:
  MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer, int port)
      : exposer_(std::move(exposer)), port_(port) {}
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
};

}  // namespace deltaserve
