// CudaModelRunner: the CUDA backend's ModelRunner (DESIGN.md "Backends"): bf16 weights on the
// GPU, the state pool in device memory (DeviceStateStorage), cuBLASLt projections, the fused
// GDN-2 decode kernel, sliding-window attention over per-slot rings, and sampling on the GPU.
//
// A Step splits its sequences in two. Sequences feeding more than one token (prompts and prompt
// chunks) go through the chunked prefill path when `chunked_prefill` is on and the model's shape
// is supported (GDN-2 head dims 128; SWA head sizes 32/64/96/128): their tokens are packed into
// passes of at most `prefill_pass_tokens` rows (a long prompt spans several passes, each
// continuing from the slot), and each pass runs the projections as GEMMs over all packed rows,
// short-conv prefill, gates, the chunked GDN-2 recurrence (gdn2_chunk_prefill.h) or SWA prefill
// (swa_prefill.h) per layer, the MLP, then advances each slot's position by its piece length and
// runs the LM head only on the rows that sample. With bf16 state, each GDN-2 layer's states of
// the pass are widened to an fp32 scratch pool (an exact GEMM with the identity), advanced there
// and rounded back once per pass. Every other sequence (single tokens, or all sequences when the
// chunked path is off) runs token-serially: in groups of at most `max_rows`, token t of every
// sequence that has one forms one decode pass through the fused decode kernels. Each decode
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
#include <optional>
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
#include "kernels/cuda/gdn2_chunk_prefill.h"
#include "kernels/cuda/gdn2_decode.h"

namespace deltaserve {

namespace cuda {
class Gemm;
}

struct CudaRunnerOptions {
  StateDtype state_dtype = StateDtype::kF32;
  std::optional<StateDtype> ring_dtype;  // storage of the SWA rings (unset: state_dtype)
  int num_slots = 1;               // >= 1
  int64_t max_step_tokens = 8192;  // >= 1
  int max_rows = 256;              // sequences advanced together in one decode pass (>= 1)
  bool use_cuda_graphs = true;
  std::vector<int> graph_batch_sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256};  // each <= max_rows
  int device = 0;
  // GDN-2 decode arrangement (gdn2_decode.h); all compute the same function. kAuto: the fused
  // single launch for small batches, the streamed pair once batch * value heads >= 1024 (fp32
  // state) or >= 256 (bf16 state).
  enum class Gdn2Kernel { kAuto, kFused, kStreamed };
  Gdn2Kernel gdn2_kernel = Gdn2Kernel::kAuto;
  // GDN-2 decode launched as a programmatic dependent of the kernel before it, which forms f and
  // z~ (Gdn2DecodeArgs::overlap_launch + state_ready): its state loads overlap that kernel.
  bool gdn2_overlap_launch = true;
  // Prompts and prompt chunks (sequences feeding > 1 token) through the chunked prefill kernels;
  // off: token-serial through the decode kernels (the reference path). Unsupported model shapes
  // fall back to token-serial.
  bool chunked_prefill = true;
  // Packed rows per prefill pass (>= 1; capped by max_step_tokens and 32768). Every pass reads
  // all weights once, so larger passes prefill faster (H200, gdn2_1.3B, 4096-token prompt:
  // 51.2 ms in passes of 2048, 47.5 in one pass) at ~0.2 MB of device buffers per row.
  int64_t prefill_pass_tokens = 8192;
  // Products of the chunked GDN-2 prefill (cuda::Gdn2PrefillPrecision): kFp32 (3xTF32,
  // fp32-level, the default), kTf32 (single TF32 products on rounded operands, under 1e-3
  // relative on the recurrence outputs, well inside the bf16 projections' error) or kBf16 (bf16
  // products, a few 1e-3; the fastest); bench/NOTES.md has the speed of each.
  cuda::Gdn2PrefillPrecision prefill_precision = cuda::Gdn2PrefillPrecision::kFp32;
  // Decode passes over at most this many rows (0..8, cuda::kGemvMaxRows) run their projections
  // through the small-batch GEMV kernels (kernels/cuda/gemv.h): the RMSNorms, the f0/g0 cast, the
  // SwiGLU and the residual adds fused into them, every one launched as a programmatic dependent
  // of the kernel before it (its weight loads overlap its predecessor's tail). 0: cuBLASLt and
  // separate row-wise kernels at every batch size (the reference arrangement).
  // Default 2: measured faster than cuBLASLt at 1 and 2 rows, slower at 4 (bench/NOTES.md).
  int gemv_max_rows = 2;
  // GEMV passes of at least this many rows compute the f / z~ up-projections (rank head_v_dim)
  // inside the fused GDN-2 decode launch (Gdn2DecodeArgs::gate_rank) instead of by a GEMV launch
  // of their own (0: never). Applies when the fused arrangement runs. Default 0: since the GEMV
  // takes eight short rows per warp (its grid leaves room for the GDN-2 blocks), the separate
  // launch is faster at 1 and 2 rows (H200, gdn2_1.3B: about -30 and -25 us per step; folded, each
  // block also reads its heads' 64 KB of up-projection rows; bench/NOTES.md).
  int fold_gates_from_rows = 0;
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
  // Forward through the small-batch GEMV kernels (rows <= gemv_max_rows).
  absl::Status ForwardGemv(int rows);
  // The GDN-2 decode arrangement for a pass of `rows` rows (options.gdn2_kernel resolved).
  cuda::Gdn2DecodeArgs::Mode Gdn2Mode(int rows) const;
  // Whether f / z~ can come from cuda::LaunchGateProducts (its shape limits); else a bf16 cast
  // and two products.
  bool UsesGateProductsKernel() const;
  // Enqueues f = bf16(f0) . f1^T and z~ = bf16(g0) . g1^T of GDN-2 layer `li` for `rows` rows
  // whose f0 / g0 are in `proj` (proj_type f32 or bf16, row stride proj_cols), into f / z (row
  // strides key_dim / value_dim); `f0g0` is bf16 [rows, 2 * head_v_dim] scratch for the cast of
  // the fallback. `programmatic`: the gate-products kernel launches as a programmatic dependent.
  absl::Status LaunchGateUpProjections(int rows, int li, const void* proj, cuda::DType proj_type,
                                       void* f0g0, float* f, float* z, bool programmatic);
  // Whether the GEMV pass of `rows` rows leaves the f / z~ up-projections to the GDN-2 launch.
  bool FoldsGateProjections(int rows) const;
  // The GDN-2 decode launch of layer `li` over `rows` rows (inputs in proj, of proj_type, and
  // f / z, or with fold_gates proj (f32) alone; output y).
  absl::Status LaunchGdn2Layer(int rows, int li, cuda::DType proj_type, bool fold_gates = false);
  // The MLP's first half for `rows` rows: y = SwiGLU(n . w12^T), with n bf16 [rows, n_embd] and
  // y bf16 (row stride ldy); the product goes through `h` (room for f32 [rows, ldh]) stored
  // bf16, an activation (MODEL_SPEC.md section 7), which halves its round trip through memory.
  absl::Status LaunchMlpUp(int64_t rows, int li, const void* n, void* h, int64_t ldh, void* y,
                           int64_t ldy);
  // The SWA decode launch of layer `li` over `rows` rows (input proj, output y).
  absl::Status LaunchSwaLayer(int rows, int li);
  // Adds 1 to the position of the slots of `rows` rows (padding rows skipped).
  absl::Status AdvancePositions(int rows);
  // Uploads rows (padded to the graph size) and runs the pass.
  absl::Status RunRows(std::span<const int> slots, std::span<const int32_t> tokens);
  // Whether the chunked prefill path runs for this model and options.
  bool ChunkedPrefillSupported() const;
  absl::Status InitPrefill();
  struct PrefillPiece {
    int slot = -1;
    std::span<const int32_t> tokens;
    const SequenceStep* sample_seq = nullptr;  // set when this piece ends a sequence that samples
    SampledToken* out = nullptr;
  };
  // One packed prefill pass (distinct slots, at most max_rows pieces and prefill_pass_tokens
  // tokens); samples the pieces that ask for it.
  absl::Status PrefillPass(std::span<const PrefillPiece> pieces);
  // Token-serial decode passes over the listed sequences of `batch`.
  absl::Status SerialSteps(const StepBatch& batch, std::span<const size_t> seqs,
                           std::span<const int> out_index, std::vector<SampledToken>* out);
  absl::Status SampleRows(std::span<const int> logit_rows, std::span<const SequenceStep* const> seqs,
                          std::span<SampledToken*> out);

  std::unique_ptr<DeviceWeights> weights_;
  CudaRunnerOptions options_;
  StateLayout layout_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceStateStorage> storage_;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::unique_ptr<Buffers> buf_;
  bool chunked_ = false;  // chunked prefill path active
  int64_t pass_tokens_ = 0;
  std::map<int, void*> graphs_;  // batch size -> cudaGraphExec_t
  // Host staging, reused across steps.
  std::vector<int32_t> h_slots_, h_tokens_;
};

}  // namespace deltaserve
