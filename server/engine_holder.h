// EngineHolder: what the gRPC handlers share with the process that owns the engine -- the engine
// once the model is loaded (absent before), the request limits and model description derived
// from it, and whether the server is draining.
//
// Thread-safety: all methods are thread-safe. Handlers take a shared_ptr to the loaded state for
// the length of one call, so the engine outlives every call that uses it.
#pragma once

#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "deltaserve/v1/deltaserve.pb.h"
#include "engine/engine.h"
#include "server/request_validation.h"

namespace deltaserve {

struct LoadedModel {
  std::shared_ptr<Engine> engine;
  RequestLimits limits;
  v1::ModelInfo info;  // pool and config fields fixed at load
};

class EngineHolder {
 public:
  void Set(std::shared_ptr<const LoadedModel> loaded) {
    absl::MutexLock lock(&mu_);
    loaded_ = std::move(loaded);
  }
  // Null until the model is loaded.
  std::shared_ptr<const LoadedModel> Get() const {
    absl::MutexLock lock(&mu_);
    return loaded_;
  }
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const LoadedModel> loaded_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> draining_{false};
};

}  // namespace deltaserve
