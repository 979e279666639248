// DeltaServeService: the deltaserve.v1.DeltaServe gRPC handlers. They authenticate, validate,
// tokenize and hand the request to the engine, then relay the engine's events; no handler takes
// an engine lock or does model work.
//
// Generate/Complete: validate -> Engine::Submit -> loop RequestStream::Next(short timeout),
// writing deltas and watching ServerContext::IsCancelled(); a client cancel (or a failed write,
// or the call's deadline) becomes Engine::Cancel so the slot is freed at the engine's next
// iteration. Every call is counted in ServerMetrics; every generation request is logged once.
//
// Thread-safety: handlers run concurrently on gRPC's sync-server threads; the service itself
// holds only immutable state and pointers to thread-safe objects.
#pragma once

#include <functional>

#include "deltaserve/v1/deltaserve.grpc.pb.h"
#include "server/auth.h"
#include "server/engine_holder.h"
#include "server/metrics.h"

namespace deltaserve {

class DeltaServeService final : public v1::DeltaServe::Service {
 public:
  // `holder` and `metrics` must outlive the service.
  DeltaServeService(const EngineHolder* holder, ServerMetrics* metrics, ApiKeyAuth auth);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Complete(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        v1::CompleteResponse* response) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  // Receives each event of a running request; returns false when the client is gone.
  using EventSink = std::function<bool(const RequestEvent& event)>;

  // Auth and "is a model loaded" (and, for generation, "not draining"); counts rejections.
  grpc::Status Admit(grpc::ServerContext* context, bool generation,
                     std::shared_ptr<const LoadedModel>* loaded);
  // The whole life of one Generate/Complete request. `sink` sees every event including the
  // terminal one (only when the request finished normally).
  grpc::Status RunGeneration(grpc::ServerContext* context, const v1::GenerateRequest& request,
                             RpcMethod method, const EventSink& sink, std::string* id);

  const EngineHolder* holder_;
  ServerMetrics* metrics_;
  const ApiKeyAuth auth_;
};

}  // namespace deltaserve
