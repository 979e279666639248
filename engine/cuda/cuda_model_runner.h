// CudaModelRunner: the CUDA backend's ModelRunner (DESIGN.md "Backends"): bf16 weights on the
// GPU, the state pool in device memory (DeviceStateStorage), cuBLASLt projections, the fused
// GDN-2 decode kernel, sliding-window attention over per-slot rings, and sampling on the GPU.
//
// A Step runs its sequences in groups of at most `max_rows`; within a group, token t of every
// sequence that has one forms one decode pass (prefill is token-serial through the same decode
// kernels, which is exact and simple; a chunked prefill kernel would replace it). Each decode
// pass over R rows replays a CUDA graph captured for the smallest configured batch size >= R
// (padding rows carry slot -1 and are skipped by the state kernels), or runs eagerly when R
// exceeds every graph size. Logits stay on the GPU; sampled tokens (and log-probabilities) come
// back. Requests asking for top_logprobs are sampled on the host from a copy of their logits row
// (the CPU sampler), everything else on the GPU (sampling.h).
//
// Thread-safety: one caller at a time (the engine thread), as ModelRunner requires. All device
// work is ordered on one stream owned by the runner.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/device_state_storage.h"
#include "engine/cuda/device_weights.h"
#include "engine/model_runner.h"
#include "engine/state_layout.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve {

namespace cuda {
class Gemm;
}

struct CudaRunnerOptions {
  StateDtype state_dtype = StateDtype::kF32;
  int num_slots = 1;               // >= 1
  int64_t max_step_tokens = 8192;  // >= 1
  int max_rows = 256;              // sequences advanced together in one decode pass (>= 1)
  bool use_cuda_graphs = true;
  std::vector<int> graph_batch_sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256};  // each <= max_rows
  int device = 0;
  // GDN-2 decode arrangement (gdn2_decode.h); all compute the same function. kAuto: the fused
  // single launch for small batches, the streamed pair once batch * value heads >= 256.
  enum class Gdn2Kernel { kAuto, kFused, kPrepared, kPipelined, kStreamed };
  Gdn2Kernel gdn2_kernel = Gdn2Kernel::kAuto;
  // Fused GDN-2 decode launched as a programmatic dependent of the projection GEMM before it
  // (Gdn2DecodeArgs::overlap_launch + state_ready): its state loads overlap the GEMM's tail.
  bool gdn2_overlap_launch = true;
};

class CudaModelRunner final : public ModelRunner {
 public:
  static absl::StatusOr<std::unique_ptr<CudaModelRunner>> Create(
      std::unique_ptr<DeviceWeights> weights, const CudaRunnerOptions& options);
  // Reads <model_dir>/config.json and model.safetensors and uploads the weights.
  static absl::StatusOr<std::unique_ptr<CudaModelRunner>> Load(const std::string& model_dir,
                                                               const CudaRunnerOptions& options);
  ~CudaModelRunner() override;

  const ModelConfig& config() const override { return weights_->config(); }
  StateStorage& state() override { return *storage_; }
  absl::Status Step(const StepBatch& batch, std::vector<SampledToken>* out) override;
  int64_t max_step_tokens() const override { return options_.max_step_tokens; }

  // Advances each slot by its token (one decode pass, distinct slots, at most max_rows) and
  // returns the logits, [n, padded_vocab] row-major, on the host. For tests.
  absl::Status DecodeForLogits(std::span<const int> slots, std::span<const int32_t> tokens,
                               std::vector<float>* logits);
  // One decode pass without sampling or host synchronisation (benchmarks).
  absl::Status DecodePass(std::span<const int> slots, std::span<const int32_t> tokens);
  absl::Status Synchronize();

  const DeviceWeights& weights() const { return *weights_; }
  DeviceStateStorage& device_state() { return *storage_; }
  cudaStream_t stream() const { return stream_; }

 private:
  struct Buffers;
  CudaModelRunner(std::unique_ptr<DeviceWeights> weights, const CudaRunnerOptions& options);
  absl::Status Init();
  // Enqueues the forward pass over `rows` rows whose slots / tokens are in the device buffers.
  absl::Status Forward(int rows);
  // Uploads rows (padded to the graph size) and runs the pass.
  absl::Status RunRows(std::span<const int> slots, std::span<const int32_t> tokens);
  absl::Status SampleRows(std::span<const int> logit_rows, std::span<const SequenceStep* const> seqs,
                          std::span<SampledToken*> out);

  std::unique_ptr<DeviceWeights> weights_;
  CudaRunnerOptions options_;
  StateLayout layout_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceStateStorage> storage_;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::unique_ptr<Buffers> buf_;
  std::map<int, void*> graphs_;  // batch size -> cudaGraphExec_t
  // Host staging, reused across steps.
  std::vector<int32_t> h_slots_, h_tokens_;
};

}  // namespace deltaserve
