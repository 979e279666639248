// The one place where engine outcomes become gRPC statuses and protobuf enums.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "deltaserve/v1/deltaserve.pb.h"
#include "engine/request.h"
#include "grpcpp/support/status.h"

namespace deltaserve {

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "INVALID_ARGUMENT", ... (the canonical upper-case names, as used in metric labels).
const char* GrpcCodeName(grpc::StatusCode code);

// The wire enum for a normal finish (length, eos, stop); FINISH_REASON_UNSPECIFIED otherwise.
v1::FinishReason ToProtoFinishReason(FinishReason reason);

// How a request that ended with `reason` (and engine status `status`) ends its RPC: OK for
// length / eos / stop; CANCELLED for a client cancel; DEADLINE_EXCEEDED; UNAVAILABLE when the
// engine cancelled it without the client asking (shutdown); INTERNAL (with the engine's message)
// for an engine error.
grpc::Status FinishStatus(FinishReason reason, const absl::Status& status, bool client_cancelled);

}  // namespace deltaserve
