// SyntheticModelRunner implementation (see synthetic_model_runner.h).
#include "engine/synthetic_model_runner.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/sampler.h"

namespace deltaserve {
namespace {

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Absorb(uint64_t h, int32_t token) {
  return Mix(h ^ (0x9E3779B97F4A7C15ull + static_cast<uint64_t>(static_cast<uint32_t>(token))));
}

void FillLogits(uint64_t h, float scale, std::span<float> logits) {
  for (size_t v = 0; v < logits.size(); ++v) {
    const uint64_t r = Mix(h + 0x632BE59BD9B4E019ull * (v + 1));
    const double u = static_cast<double>(r >> 11) * 0x1.0p-53;  // [0, 1)
    logits[v] = static_cast<float>((2.0 * u - 1.0) * scale);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SyntheticModelRunner>> SyntheticModelRunner::Create(
    SyntheticRunnerOptions options) {
  if (options.vocab_size < 2) return absl::InvalidArgumentError("vocab_size must be >= 2");
  if (options.num_slots < 1) return absl::InvalidArgumentError("num_slots must be >= 1");
  if (options.max_step_tokens < 1) {
    return absl::InvalidArgumentError("max_step_tokens must be >= 1");
  }
  auto runner = std::unique_ptr<SyntheticModelRunner>(new SyntheticModelRunner());
  ModelConfig& c = runner->config_;
  c.vocab_size = options.vocab_size;
  c.padding_multiple = 1;
  c.padded_vocab_size = options.vocab_size;
  c.n_layer = 1;
  c.n_embd = 8;
  c.intermediate_size = 8;
  c.gdn2_per_layer = 1;
  c.gdn2.num_heads = 1;
  c.gdn2.num_v_heads = 1;
  c.gdn2.head_k_dim = 2;
  c.gdn2.head_v_dim = 4;
  c.gdn2.conv_size = 1;
  c.bos_token_id = options.bos_token_id;
  c.eos_token_id = options.eos_token_id;
  c.tokenizer_type = TokenizerType::kByte;
  c.max_context = options.max_context;
  StateLayout layout(c, StateDtype::kF32);
  auto storage = HostStateStorage::Create(layout, options.num_slots);
  if (!storage.ok()) return storage.status();
  runner->storage_ = std::move(*storage);
  runner->logits_.resize(options.vocab_size);
  runner->seen_.assign(options.num_slots, 0);
  runner->options_ = std::move(options);
  return runner;
}

std::vector<float> SyntheticModelRunner::LogitsAfter(std::span<const int32_t> history) const {
  uint64_t h = 0;
  for (int32_t t : history) h = Absorb(h, t);
  std::vector<float> logits(options_.vocab_size);
  FillLogits(h, options_.logit_scale, logits);
  return logits;
}

absl::Status SyntheticModelRunner::Step(const StepBatch& batch, std::vector<SampledToken>* out) {
  ++steps_;
  if (options_.step_hook) {
    if (absl::Status s = options_.step_hook(batch); !s.ok()) return s;
  }
  const StateLayout& layout = storage_->layout();
  const size_t hash_offset = layout.layer(0).gdn2.recurrent;
  absl::Status status;
  for (const SequenceStep& seq : batch.seqs) {
    if (seq.slot < 0 || seq.slot >= storage_->num_slots()) {
      status = absl::InvalidArgumentError(absl::StrCat("slot ", seq.slot, " out of range"));
      break;
    }
    if (seen_[seq.slot]) {
      status = absl::InvalidArgumentError(absl::StrCat("slot ", seq.slot, " twice in a batch"));
      break;
    }
    seen_[seq.slot] = 1;
    if (seq.tokens.empty()) {
      status = absl::InvalidArgumentError("a sequence step has no tokens");
      break;
    }
    if (seq.sample && (seq.sampling == nullptr || seq.sampler_state == nullptr)) {
      status = absl::InvalidArgumentError("sample without sampling parameters or state");
      break;
    }
  }
  for (const SequenceStep& seq : batch.seqs) {
    if (seq.slot >= 0 && seq.slot < storage_->num_slots()) seen_[seq.slot] = 0;
  }
  if (!status.ok()) return status;

  for (const SequenceStep& seq : batch.seqs) {
    std::byte* data = storage_->SlotData(seq.slot);
    int64_t position;
    uint64_t h;
    std::memcpy(&position, data + layout.position_offset(), sizeof(position));
    std::memcpy(&h, data + hash_offset, sizeof(h));
    for (int32_t t : seq.tokens) {
      if (t < 0 || t >= options_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token ", t, " outside the vocabulary"));
      }
      h = Absorb(h, t);
    }
    position += static_cast<int64_t>(seq.tokens.size());
    std::memcpy(data + layout.position_offset(), &position, sizeof(position));
    std::memcpy(data + hash_offset, &h, sizeof(h));
    if (!seq.sample) continue;
    if (options_.instant) {
      SampledToken st;
      st.token = static_cast<int32_t>(Mix(h) % static_cast<uint64_t>(options_.vocab_size));
      ++seq.sampler_state->rng_counter;
      out->push_back(std::move(st));
    } else {
      FillLogits(h, options_.logit_scale, logits_);
      out->push_back(SampleToken(logits_, options_.vocab_size, *seq.sampling, seq.sampler_state));
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve
