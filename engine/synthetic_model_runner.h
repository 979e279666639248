// SyntheticModelRunner: a deterministic stand-in model for engine tests, benchmarks and load
// tests without weights. Each slot (in a real HostStateStorage) carries a 64-bit hash of every
// token it has consumed plus the position; the "logits" after a token are a pseudo-random
// function of that hash, so the output depends on the whole history and on the slot state being
// kept, reset, swapped and restored correctly -- exactly like a recurrent model, at no cost.
//
// Modes: normal (logits over the vocabulary, sampled by the host sampler, so every sampling
// option works) and instant (the sampled token is the hash modulo the vocabulary, skipping logits
// and sampling: a runner that "returns sampled tokens instantly", for the engine benchmark).
//
// Thread-safety: as ModelRunner (one caller at a time).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/host_state_storage.h"
#include "engine/model_runner.h"

namespace deltaserve {

struct SyntheticRunnerOptions {
  int vocab_size = 258;          // the byte tokenizer's vocabulary by default
  int bos_token_id = 256;
  int eos_token_id = 257;
  int num_slots = 64;
  int64_t max_step_tokens = 1 << 20;
  int64_t max_context = 1 << 20;
  bool instant = false;
  float logit_scale = 4.0f;      // logits are uniform in [-logit_scale, logit_scale]
  // Called at the start of every Step (on the engine thread); a non-OK status fails the Step.
  std::function<absl::Status(const StepBatch&)> step_hook;
};

class SyntheticModelRunner final : public ModelRunner {
 public:
  static absl::StatusOr<std::unique_ptr<SyntheticModelRunner>> Create(
      SyntheticRunnerOptions options);

  const ModelConfig& config() const override { return config_; }
  StateStorage& state() override { return *storage_; }
  absl::Status Step(const StepBatch& batch, std::vector<SampledToken>* out) override;
  int64_t max_step_tokens() const override { return options_.max_step_tokens; }

  // The logits the runner produces after consuming `history` from a reset slot (for tests that
  // compute exact expected distributions).
  std::vector<float> LogitsAfter(std::span<const int32_t> history) const;
  int64_t steps() const { return steps_; }

 private:
  SyntheticRunnerOptions options_;
  ModelConfig config_;
  std::unique_ptr<HostStateStorage> storage_;
  std::vector<float> logits_;
  std::vector<uint8_t> seen_;
  int64_t steps_ = 0;
};

}  // namespace deltaserve
