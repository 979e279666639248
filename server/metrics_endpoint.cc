// MetricsEndpoint: prometheus-cpp's civetweb exposer, with its bind failure turned into a status.
#include "server/metrics_endpoint.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace deltaserve {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& host,
                                                                        int port,
                                                                        ServerMetrics* metrics) {
  const std::string address =
      host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                          : absl::StrCat(host, ":", port);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-port: cannot listen on ", address, ": ", e.what()));
  }
  exposer->RegisterCollectable(metrics->collectable(), "/metrics");
  const std::vector<int> ports = exposer->GetListeningPorts();
  return std::unique_ptr<MetricsEndpoint>(
      new MetricsEndpoint(std::move(exposer), ports.empty() ? port : ports[0]));
}

}  // namespace deltaserve
