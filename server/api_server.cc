// ApiServer: gRPC server assembly (see api_server.h).
#include "server/api_server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace deltaserve {
namespace {

constexpr char kServiceName[] = "deltaserve.v1.DeltaServe";

void SetHealth(grpc::Server* server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

}  // namespace

ApiServer::ApiServer(ServerMetrics* metrics, ApiKeyAuth auth)
    : metrics_(metrics), service_(&holder_, metrics, std::move(auth)) {}

ApiServer::~ApiServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(const ServerConfig& config,
                                                            ServerMetrics* metrics,
                                                            ApiKeyAuth auth, const TlsFiles& tls) {
  std::unique_ptr<ApiServer> server(new ApiServer(metrics, std::move(auth)));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (tls.cert_chain_pem.empty()) {
    creds = grpc::InsecureServerCredentials();
  } else {
    grpc::SslServerCredentialsOptions options;
    options.pem_key_cert_pairs.push_back({tls.private_key_pem, tls.cert_chain_pem});
    creds = grpc::SslServerCredentials(options);
  }
  const std::string address = config.host.find(':') != std::string::npos
                                  ? absl::StrCat("[", config.host, "]:", config.port)
                                  : absl::StrCat(config.host, ":", config.port);
  grpc::ResourceQuota quota("deltaserve");
  quota.SetMaxThreads(config.grpc_threads);

  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, creds, &server->port_);
  builder.RegisterService(&server->service_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetResourceQuota(quota);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--port: cannot listen on ", address,
                                               " (in use, or the address is not local)"));
  }
  SetHealth(server->server_.get(), false);
  return server;
}

void ApiServer::SetModel(std::shared_ptr<const LoadedModel> loaded) {
  holder_.Set(std::move(loaded));
  if (!holder_.draining()) SetHealth(server_.get(), true);
}

void ApiServer::BeginDrain() {
  holder_.StartDraining();
  metrics_->SetDraining(true);
  SetHealth(server_.get(), false);
  if (std::shared_ptr<const LoadedModel> loaded = holder_.Get()) loaded->engine->StopAdmitting();
}

void ApiServer::Shutdown(absl::Duration cancel_after) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->Shutdown();
  }
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(cancel_after));
  server_->Wait();
}

}  // namespace deltaserve
