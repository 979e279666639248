// CpuModelRunner implementation (see cpu_model_runner.h).
#include "engine/cpu_model_runner.h"

#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/sampler.h"

namespace deltaserve {

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(
    std::unique_ptr<CpuModel> model, int num_slots, int64_t max_step_tokens) {
  if (model == nullptr) return absl::InvalidArgumentError("CpuModelRunner: no model");
  if (max_step_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens (", max_step_tokens, ") must be >= 1"));
  }
  absl::StatusOr<std::unique_ptr<HostStateStorage>> storage =
      HostStateStorage::Create(model->layout(), num_slots);
  if (!storage.ok()) return storage.status();
  return std::unique_ptr<CpuModelRunner>(
      new CpuModelRunner(std::move(model), *std::move(storage), max_step_tokens));
}

CpuModelRunner::CpuModelRunner(std::unique_ptr<CpuModel> model,
                               std::unique_ptr<HostStateStorage> storage, int64_t max_step_tokens)
    : model_(std::move(model)), storage_(std::move(storage)), max_step_tokens_(max_step_tokens) {}

absl::Status CpuModelRunner::Step(const StepBatch& batch, std::vector<SampledToken>* out) {
  out->clear();
  const int64_t total = batch.num_tokens();
  if (total > max_step_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step carries ", total, " tokens, more than max_step_tokens (", max_step_tokens_, ")"));
  }
  seqs_.clear();
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SequenceStep& s = batch.seqs[i];
    if (s.slot < 0 || s.slot >= storage_->num_slots()) {
      return absl::OutOfRangeError(absl::StrCat("sequence ", i, ": slot ", s.slot,
                                                " is outside [0, ", storage_->num_slots(), ")"));
    }
    if (s.sample && (s.sampling == nullptr || s.sampler_state == nullptr)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, ": sample is set without sampling parameters or state"));
    }
    seqs_.push_back({storage_->SlotData(s.slot), s.tokens, s.sample});
  }
  if (absl::Status st = model_->Forward(seqs_, /*all_positions=*/false, &logits_); !st.ok()) {
    return st;
  }
  const int64_t V = model_->config().padded_vocab_size;
  int64_t row = 0;
  for (const SequenceStep& s : batch.seqs) {
    if (!s.sample) continue;
    std::span<float> row_logits(logits_.data() + row * V, static_cast<size_t>(V));
    out->push_back(
        SampleToken(row_logits, model_->config().vocab_size, *s.sampling, s.sampler_state));
    ++row;
  }
  return absl::OkStatus();
}

}  // namespace deltaserve
