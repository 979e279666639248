// Engine: owns one ModelRunner, its slot pool and the scheduler, on one engine thread.
//
// Clients (gRPC handlers, the CLI) call Submit from any thread and read the returned
// RequestStream; each request yields zero or more token events, then exactly one terminal event.
// Cancel / deadlines / Shutdown are observed by the engine thread at its next iteration, which
// frees the request's slot. No client call ever waits on model work, except RequestStream::Next.
//
// Thread-safety: every public method is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine_config.h"
#include "engine/engine_observer.h"
#include "engine/model_runner.h"
#include "engine/request.h"
#include "engine/tokenizer.h"

namespace deltaserve {

// The consumer side of one request's event stream.
class RequestStream {
 public:
  virtual ~RequestStream() = default;
  // Waits up to `timeout` for the next event; nullopt on timeout. After the terminal event has
  // been returned, returns nullopt immediately.
  virtual std::optional<RequestEvent> Next(absl::Duration timeout) = 0;
  virtual const std::string& id() const = 0;
};

// A point-in-time view for gauges and GetModelInfo.
struct EngineStats {
  int slots_total = 0;
  int slots_used = 0;
  size_t bytes_per_slot = 0;
  int running_requests = 0;   // holding a slot (prefilling or decoding)
  int waiting_requests = 0;   // queued for a slot (including swapped-out ones)
  int swapped_requests = 0;
  bool admitting = true;
  int64_t swap_outs_total = 0;  // preemptions (slot copied to host) since start
  int64_t steps_total = 0;      // model steps since start
};

class Engine {
 public:
  // Starts the engine thread. The observer (may be null) is called from the engine thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const EngineConfig& config, std::unique_ptr<ModelRunner> runner,
      std::shared_ptr<const Tokenizer> tokenizer, std::shared_ptr<EngineObserver> observer);
  virtual ~Engine() = default;  // implies Shutdown()

  // Queues a request. Errors: InvalidArgument (bad tokens / params, naming the field),
  // ResourceExhausted (waiting queue full), Unavailable (not admitting: draining or shut down),
  // AlreadyExists (duplicate id).
  virtual absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request) = 0;
  // Marks a request cancelled; its terminal event has reason kCancelled. Unknown ids are ignored.
  virtual void Cancel(const std::string& request_id) = 0;
  // Stops admitting new requests (Submit returns Unavailable); running ones continue.
  virtual void StopAdmitting() = 0;
  // Number of requests not yet finished (queued + running).
  virtual int InFlight() const = 0;
  virtual EngineStats Stats() const = 0;
  // Finishes every remaining request with kCancelled and joins the engine thread. Idempotent.
  virtual void Shutdown() = 0;

  virtual const ModelConfig& model_config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
};

}  // namespace deltaserve
