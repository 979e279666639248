// DeltaServe handlers (see deltaserve_service.h).
#include "server/deltaserve_service.h"

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/logging.h"
#include "server/request_validation.h"
#include "server/status_map.h"

namespace deltaserve {
namespace {

// How long one RequestStream::Next waits before the handler re-checks for a client cancel.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
// After Engine::Cancel, how long the handler waits for the terminal event before giving up.
constexpr absl::Duration kCancelWait = absl::Seconds(10);

uint64_t RandomU64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string NewRequestId() { return absl::StrFormat("req-%016x", RandomU64()); }

void FillLogprobs(const std::vector<TokenLogprob>& in,
                  google::protobuf::RepeatedPtrField<v1::TokenLogprob>* out) {
  for (const TokenLogprob& lp : in) {
    v1::TokenLogprob* o = out->Add();
    o->set_token_id(lp.token);
    o->set_logprob(lp.logprob);
    for (const auto& [token, logprob] : lp.top) {
      v1::TokenLogprob::Alternative* alt = o->add_top();
      alt->set_token_id(token);
      alt->set_logprob(logprob);
    }
  }
}

void FillFinished(const RequestEvent& event, v1::Finished* out) {
  out->set_finish_reason(ToProtoFinishReason(event.finish_reason));
  out->mutable_usage()->set_prompt_tokens(event.usage.prompt_tokens);
  out->mutable_usage()->set_generated_tokens(event.usage.generated_tokens);
  out->mutable_timings()->set_queue_seconds(event.timings.queue_seconds);
  out->mutable_timings()->set_first_token_seconds(event.timings.first_token_seconds);
  out->mutable_timings()->set_total_seconds(event.timings.total_seconds);
}

// The call's deadline on the steady clock; nullopt when the client set none.
std::optional<Clock::time_point> SteadyDeadline(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return std::nullopt;
  const auto remaining = deadline - std::chrono::system_clock::now();
  if (remaining > std::chrono::hours(24 * 365)) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(remaining);
}

bool IsRejectionCode(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::UNAUTHENTICATED || code == grpc::StatusCode::UNAVAILABLE ||
         code == grpc::StatusCode::ALREADY_EXISTS;
}

}  // namespace

DeltaServeService::DeltaServeService(const EngineHolder* holder, ServerMetrics* metrics,
                                     ApiKeyAuth auth)
    : holder_(holder), metrics_(metrics), auth_(std::move(auth)) {}

grpc::Status DeltaServeService::Admit(grpc::ServerContext* context, bool generation,
                                      std::shared_ptr<const LoadedModel>* loaded) {
  grpc::Status status = auth_.Check(*context);
  if (status.ok()) {
    *loaded = holder_->Get();
    if (*loaded == nullptr) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading");
    } else if (generation && holder_->draining()) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the server is draining and accepts no new requests");
    }
  }
  if (!status.ok() && generation) metrics_->RecordRejected(status.error_code());
  return status;
}

grpc::Status DeltaServeService::RunGeneration(grpc::ServerContext* context,
                                              const v1::GenerateRequest& request,
                                              RpcMethod method, const EventSink& sink,
                                              std::string* id) {
  *id = request.request_id().empty() ? NewRequestId() : request.request_id();
  RequestLogRecord record;
  record.id = *id;
  record.method = RpcMethodName(method);
  record.finish_reason = "rejected";
  auto finish = [&](const grpc::Status& status) {
    record.code = GrpcCodeName(status.error_code());
    record.message = status.error_message();
    LogRequest(record);
    return status;
  };
  const absl::Time start = absl::Now();
  auto elapsed = [&start] { return absl::ToDoubleSeconds(absl::Now() - start); };

  std::shared_ptr<const LoadedModel> loaded;
  if (grpc::Status s = Admit(context, /*generation=*/true, &loaded); !s.ok()) return finish(s);
  absl::StatusOr<GenerationRequest> built = BuildGenerationRequest(
      request, loaded->engine->tokenizer(), loaded->limits, *id, RandomU64());
  if (!built.ok()) {
    metrics_->RecordRejected(grpc::StatusCode::INVALID_ARGUMENT);
    return finish(ToGrpcStatus(built.status()));
  }
  record.prompt_tokens = static_cast<int64_t>(built->prompt_tokens.size());
  const std::optional<Clock::time_point> deadline = SteadyDeadline(*context);
  built->deadline = deadline;
  if (deadline.has_value() && *deadline <= Clock::now()) {
    return finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded"));
  }

  Engine& engine = *loaded->engine;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = engine.Submit(*std::move(built));
  if (!stream.ok()) {
    grpc::Status s = ToGrpcStatus(stream.status());
    if (IsRejectionCode(s.error_code())) metrics_->RecordRejected(s.error_code());
    record.total_seconds = elapsed();
    return finish(s);
  }

  bool client_gone = false;
  std::optional<absl::Time> cancel_sent;
  std::optional<RequestEvent> terminal;
  while (!terminal.has_value()) {
    std::optional<RequestEvent> event = (*stream)->Next(kPollInterval);
    if (event.has_value() && event->finished) {
      terminal = std::move(event);
      break;
    }
    if (event.has_value() && !client_gone && !sink(*event)) client_gone = true;
    if (!client_gone && context->IsCancelled()) client_gone = true;
    if (client_gone && !cancel_sent.has_value()) {
      engine.Cancel(*id);
      cancel_sent = absl::Now();
    }
    if (cancel_sent.has_value() && absl::Now() - *cancel_sent > kCancelWait) break;
  }

  if (!terminal.has_value()) {
    record.finish_reason = "cancelled";
    record.total_seconds = elapsed();
    return finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by client"));
  }
  record.finish_reason = FinishReasonLabel(terminal->finish_reason);
  record.prompt_tokens = terminal->usage.prompt_tokens;
  record.generated_tokens = terminal->usage.generated_tokens;
  record.queue_seconds = terminal->timings.queue_seconds;
  record.first_token_seconds = terminal->timings.first_token_seconds;
  record.total_seconds = terminal->timings.total_seconds;
  grpc::Status status = FinishStatus(terminal->finish_reason, terminal->status, client_gone);
  if (client_gone && terminal->finish_reason == FinishReason::kCancelled && deadline.has_value() &&
      Clock::now() >= *deadline) {
    status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
  }
  if (status.ok() && !client_gone && !sink(*terminal)) {
    status = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return finish(status);
}

grpc::Status DeltaServeService::Generate(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer) {
  std::string id;
  auto sink = [&](const RequestEvent& event) {
    v1::GenerateResponse msg;
    msg.set_request_id(id);
    msg.mutable_token_ids()->Add(event.tokens.begin(), event.tokens.end());
    msg.set_text(event.text);
    FillLogprobs(event.logprobs, msg.mutable_logprobs());
    if (event.finished) FillFinished(event, msg.mutable_finished());
    return writer->Write(msg);
  };
  grpc::Status status = RunGeneration(context, *request, RpcMethod::kGenerate, sink, &id);
  metrics_->RecordRpc(RpcMethod::kGenerate, status.error_code());
  return status;
}

grpc::Status DeltaServeService::Complete(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         v1::CompleteResponse* response) {
  std::string id;
  auto sink = [&](const RequestEvent& event) {
    response->mutable_token_ids()->Add(event.tokens.begin(), event.tokens.end());
    response->mutable_text()->append(event.text);
    FillLogprobs(event.logprobs, response->mutable_logprobs());
    if (event.finished) FillFinished(event, response->mutable_finished());
    return true;
  };
  grpc::Status status = RunGeneration(context, *request, RpcMethod::kComplete, sink, &id);
  response->set_request_id(id);
  metrics_->RecordRpc(RpcMethod::kComplete, status.error_code());
  return status;
}

grpc::Status DeltaServeService::Tokenize(grpc::ServerContext* context,
                                         const v1::TokenizeRequest* request,
                                         v1::TokenizeResponse* response) {
  std::shared_ptr<const LoadedModel> loaded;
  grpc::Status status = Admit(context, /*generation=*/false, &loaded);
  if (status.ok()) {
    const bool add_bos = request->has_add_bos() ? request->add_bos() : true;
    if (add_bos && loaded->limits.bos_id >= 0) response->add_token_ids(loaded->limits.bos_id);
    absl::StatusOr<std::vector<int32_t>> ids = loaded->engine->tokenizer().Encode(request->text());
    if (ids.ok()) {
      response->mutable_token_ids()->Add(ids->begin(), ids->end());
    } else {
      status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("text: cannot be tokenized: ", ids.status().message()));
    }
  }
  metrics_->RecordRpc(RpcMethod::kTokenize, status.error_code());
  return status;
}

grpc::Status DeltaServeService::Detokenize(grpc::ServerContext* context,
                                           const v1::DetokenizeRequest* request,
                                           v1::DetokenizeResponse* response) {
  std::shared_ptr<const LoadedModel> loaded;
  grpc::Status status = Admit(context, /*generation=*/false, &loaded);
  if (status.ok()) {
    status = ToGrpcStatus(
        ValidateTokenIds(request->token_ids(), loaded->limits.vocab_size, "token_ids"));
  }
  if (status.ok()) {
    const std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
    absl::StatusOr<std::string> text = loaded->engine->tokenizer().Decode(ids);
    if (text.ok()) {
      response->set_text(*std::move(text));
    } else {
      status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("token_ids: ", text.status().message()));
    }
  }
  metrics_->RecordRpc(RpcMethod::kDetokenize, status.error_code());
  return status;
}

grpc::Status DeltaServeService::GetModelInfo(grpc::ServerContext* context,
                                             const v1::GetModelInfoRequest* request,
                                             v1::ModelInfo* response) {
  std::shared_ptr<const LoadedModel> loaded;
  grpc::Status status = Admit(context, /*generation=*/false, &loaded);
  if (status.ok()) *response = loaded->info;
  metrics_->RecordRpc(RpcMethod::kGetModelInfo, status.error_code());
  return status;
}

}  // namespace deltaserve
