// CpuModelRunner: the CPU backend's ModelRunner -- CpuModel (exact fp32) over a pool of slots in
// host memory, sampling on the host with SampleToken (sampler.h).
//
// Each Step runs the whole batch (prompt chunks and decode tokens together) as one CpuModel
// Forward, so every projection is one sgemm over all of the step's tokens.
// Thread-safety: one caller at a time (the engine thread), as ModelRunner requires.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cpu_model.h"
#include "engine/host_state_storage.h"
#include "engine/model_runner.h"

namespace deltaserve {

class CpuModelRunner final : public ModelRunner {
 public:
  // `num_slots` >= 1; `max_step_tokens` >= 1 bounds the tokens of one Step (and the scratch).
  static absl::StatusOr<std::unique_ptr<CpuModelRunner>> Create(std::unique_ptr<CpuModel> model,
                                                                int num_slots,
                                                                int64_t max_step_tokens);

  const ModelConfig& config() const override { return model_->config(); }
  StateStorage& state() override { return *storage_; }
  absl::Status Step(const StepBatch& batch, std::vector<SampledToken>* out) override;
  int64_t max_step_tokens() const override { return max_step_tokens_; }

  CpuModel& model() { return *model_; }
  HostStateStorage& host_state() { return *storage_; }

 private:
  CpuModelRunner(std::unique_ptr<CpuModel> model, std::unique_ptr<HostStateStorage> storage,
                 int64_t max_step_tokens);

  std::unique_ptr<CpuModel> model_;
  std::unique_ptr<HostStateStorage> storage_;
  int64_t max_step_tokens_;
  std::vector<CpuModel::Sequence> seqs_;  // reused across steps
  std::vector<float> logits_;             // reused across steps
};

}  // namespace deltaserve
