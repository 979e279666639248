// ApiServer: the gRPC server process surface -- the DeltaServe service, grpc.health.v1.Health,
// server reflection, message-size and thread limits, optional TLS and API keys.
//
// Life cycle: Start (listening; health NOT_SERVING, calls get UNAVAILABLE) -> SetModel (health
// SERVING) -> BeginDrain (health NOT_SERVING, new generation requests get UNAVAILABLE, running
// ones continue) -> Shutdown (cancels calls still open after the given time and waits for every
// handler to return).
// Thread-safety: SetModel, BeginDrain and Shutdown are called from one controlling thread.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "server/auth.h"
#include "server/deltaserve_service.h"
#include "server/engine_holder.h"
#include "server/metrics.h"
#include "server/server_config.h"

namespace deltaserve {

struct TlsFiles {
  std::string cert_chain_pem;  // empty: plaintext
  std::string private_key_pem;
};

class ApiServer {
 public:
  // Binds config.host:config.port. `metrics` must outlive the server.
  static absl::StatusOr<std::unique_ptr<ApiServer>> Start(const ServerConfig& config,
                                                          ServerMetrics* metrics, ApiKeyAuth auth,
                                                          const TlsFiles& tls);
  ~ApiServer();

  int port() const { return port_; }  // the bound port (useful with --port=0)
  void SetModel(std::shared_ptr<const LoadedModel> loaded);
  void BeginDrain();
  void Shutdown(absl::Duration cancel_after);

 private:
  ApiServer(ServerMetrics* metrics, ApiKeyAuth auth);

  ServerMetrics* metrics_;
  EngineHolder holder_;
  DeltaServeService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace deltaserve
