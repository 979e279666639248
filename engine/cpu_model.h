// CpuModel: the exact fp32 forward pass of a GDN-2 / hybrid model (MODEL_SPEC.md sections 1-3),
// the reference every other backend is checked against.
//
// It steps slots whose bytes are laid out per StateLayout (state_layout.h): recurrent states in
// fp32 or bf16 storage (bf16 is widened to fp32 for the whole step and rounded back once at its
// end), SWA rings in fp32 or bf16 storage (each key and value rounded as it is stored), conv
// histories in fp32, the position counter advanced by the number of tokens fed. One Forward
// call takes any mix of sequences (prompt chunks of T >= 1 tokens and single decode tokens): all
// their tokens are stacked into one matrix so every projection is one sgemm; the token-serial
// parts (convolutions, recurrences, attention) run per sequence and head on a thread pool.
//
// Thread-safety: Forward mutates internal scratch buffers; one caller at a time. The weights are
// private fp32 copies; the ModelWeights used to create the model may be dropped afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/state_layout.h"
#include "kernels/cpu/parallel.h"

namespace deltaserve {

class CpuModel {
 public:
  // `threads`: threads for OpenBLAS and the per-head work (0: all hardware threads);
  // `ring_dtype`: the SWA rings' storage (unset: state_dtype).
  static absl::StatusOr<std::unique_ptr<CpuModel>> Create(
      const ModelWeights& weights, StateDtype state_dtype, int threads,
      std::optional<StateDtype> ring_dtype = std::nullopt);
  // Reads <model_dir>/config.json and model.safetensors.
  static absl::StatusOr<std::unique_ptr<CpuModel>> Load(
      const std::string& model_dir, StateDtype state_dtype, int threads,
      std::optional<StateDtype> ring_dtype = std::nullopt);
  ~CpuModel();

  const ModelConfig& config() const { return config_; }
  const StateLayout& layout() const { return layout_; }
  int threads() const { return pool_.num_threads(); }

  struct Sequence {
    std::byte* slot = nullptr;        // layout().slot_bytes() bytes, 8-byte aligned
    std::span<const int32_t> tokens;  // >= 1 tokens, each in [0, vocab_size)
    bool want_logits = true;          // produce logits for this sequence
  };

  // Advances every sequence's slot by its tokens. Logits ([rows, padded_vocab_size], row-major)
  // are written for the sequences with want_logits, in order: the last token's row only, or one
  // row per token when `all_positions`. Slots must be distinct. On an error (bad token, bad
  // arguments) no slot has been modified.
  absl::Status Forward(std::span<const Sequence> seqs, bool all_positions,
                       std::vector<float>* logits);

  // One sequence; returns logits of the last token (or all tokens).
  absl::StatusOr<std::vector<float>> Run(std::byte* slot, std::span<const int32_t> tokens,
                                         bool all_positions = false);

  // Weights for one layer, fp32, in the layouts the kernels want (public for tests/benchmarks).
  struct Layer;

 private:
  CpuModel(const ModelConfig& config, StateDtype state_dtype,
           std::optional<StateDtype> ring_dtype, int threads);
  void RunGdn2Layer(int li, std::span<const Sequence> seqs);
  void RunSwaLayer(int li, std::span<const Sequence> seqs);
  void RunMlp(int li);
  void Reserve(int64_t rows);
  // pool_.ParallelFor, or a plain loop on this thread when `flops` (the loop's estimated work)
  // is too small to pay for waking the workers.
  void ParallelFor(int64_t n, double flops, const std::function<void(int64_t, int)>& fn);

  ModelConfig config_;
  StateLayout layout_;
  cpu::ThreadPool pool_;
  std::vector<float> wte_, lm_head_, ln_f_;
  std::vector<std::unique_ptr<Layer>> layers_;

  // Column offsets in the fused GDN-2 input projection [q~ | k~ | v~ | b | w | f0 | g0].
  int64_t col_q_ = 0, col_k_ = 0, col_v_ = 0, col_b_ = 0, col_w_ = 0, col_f0_ = 0, col_g0_ = 0;
  int64_t gdn2_proj_cols_ = 0;

  // Scratch, grown on demand, never shrunk (no per-step allocation in steady state).
  int64_t capacity_rows_ = 0;
  int64_t rows_ = 0;                          // stacked rows of the current Forward
  std::vector<int64_t> seq_row0_;             // first stacked row of each sequence
  std::vector<int64_t> seq_pos0_;             // slot position before this step
  std::vector<const std::byte*> slot_check_;  // distinctness check
  std::vector<float> x_, n_, proj_, qc_, kc_, vc_, f_, z_, o_, h_, act_, sq_, sk_, sv_, logit_rows_;
  std::vector<std::vector<float>> thread_scratch_;  // per pool thread
};

}  // namespace deltaserve
