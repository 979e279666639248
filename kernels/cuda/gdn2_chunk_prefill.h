// Chunked GDN-2 prefill: the Gated Delta Rule-2 recurrence (MODEL_SPEC.md section 1) over whole
// prompts or prompt chunks, for packed variable-length batches, in the chunkwise form
// (tools/gdn2_chunk_check.py derives and checks it in float64). Also a token-serial launcher
// over the same arguments (the reference path and the benchmark's baseline).
//
// Per sequence s (tokens cu_seqlens[s] .. cu_seqlens[s+1]-1) and value head hv (key head
// kh = hv / (HV/H)), starting from the state in slot slots[s]:
//   S_bar = diag(exp(g_t)) S;  u_t = w_t*v_t - S_bar^T (b_t*k_t);  S = S_bar + k_t u_t^T;
//   o_t = S^T q_t;   the final S is written back to the slot.
// q must already be L2-normalised and scaled, k L2-normalised, g the log-decay (<= 0), b and w
// the gate activations (the caller runs conv, norms and gates; see gdn2_decode.h for those).
//
// Chunkwise (chunk C = 64, positions t of a chunk, G = cumulative g from the chunk start):
// phase 1, parallel over chunks: T = strict-lower [sum_c b_t k_t k_j exp(G_t - G_j)],
// Aqk = lower [sum_c q_t k_j exp(G_t - G_j)], (I + T)[Y | U'] = [exp(G) b k | w v] by forward
// substitution, Qg = exp(G) q, Ktail = exp(G_last - G) k, gamma = exp(G_last);
// phase 2, sequential over a sequence's chunks, parallel over heads and state-column blocks:
// U = U' - Y S; O = Qg S + Aqk U; S = diag(gamma) S + Ktail^T U. Every exponent is <= 0, so
// decays down to exp(-30) per token (or lower) cannot overflow. All arithmetic is fp32 (the
// products' accuracy: Gdn2PrefillPrecision).
//
// Tensors (device memory; strides in elements; rows are tokens of the packed batch):
//   cu_seqlens  int32 [num_seqs + 1]   non-decreasing, cu_seqlens[0] = 0, last = total_tokens
//   slots       int32 [num_seqs]       distinct slot indices in [0, num_slots)
//   pool        bytes [num_slots, slot_stride_bytes]; recurrent state f32 [HV, dk, dv]
//               row-major at recurrent_offset (16-byte aligned); zero it for a fresh sequence
//   q, k, b     input_type [total_tokens, H*dk]   (own row strides: multiples of 4 for f32,
//   v, w        input_type [total_tokens, HV*dv]   of 8 for bf16, i.e. 16-byte rows)
//   g           f32 [total_tokens, H*dk]   (the log-decay stays f32: its cumulative sum is
//                                           precision-sensitive; row stride a multiple of 4)
//   o           f32 [total_tokens, HV*dv]  (row stride o_stride)
//   workspace   f32 [Gdn2ChunkWorkspaceFloats(...)] (chunked launcher only; 16-byte aligned)
// Supported: dk = dv = 128, HV a multiple of H, state f32. The launchers return
// InvalidArgument naming the offending field, never abort.
//
// Thread-safety: launches are ordered on `stream`; sequences of one launch must use distinct
// slots, and concurrent launches touching the same slot are a caller error. With kBf16 and few
// sequences the chunked launcher runs phase 2 beside phase 1 on an internal high-priority stream
// of the device (forked from and joined back into `stream` with events, so it can be captured in
// a CUDA graph); `stream` still orders the whole launch.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

inline constexpr int kGdn2PrefillChunk = 64;

// Accuracy of the chunked path's tensor-core products (the state and every sum stay fp32):
//   kFp32  3xTF32 products: fp32-level results (about 1e-6 relative), the contract for fp32
//          inputs;
//   kTf32  single TF32 products on operands rounded to nearest (2^-11 relative each; 3e-4 to
//          6e-4 relative on outputs and states in the tests): for models whose q/k/v come from
//          bf16 projections, well inside their bf16-level error; three times fewer tensor-core
//          instructions.
//   kBf16  bf16 products (2^-9 relative per operand) on a bf16 workspace, in one phase-2 pass
//          that also computes the outputs: the precision of the reference Triton kernels, for
//          bf16 models; the fastest, and no chunk-start states in the workspace.
// The token-serial launcher ignores it (plain fp32).
enum class Gdn2PrefillPrecision { kFp32, kTf32, kBf16 };

struct Gdn2PrefillShape {
  int num_heads = 16;    // H
  int num_v_heads = 16;  // HV
  int head_k_dim = 128;  // dk
  int head_v_dim = 128;  // dv

  int key_dim() const { return num_heads * head_k_dim; }
  int value_dim() const { return num_v_heads * head_v_dim; }
};

struct Gdn2PrefillArgs {
  int num_seqs = 0;
  const int32_t* cu_seqlens = nullptr;  // device
  int max_seq_len = 0;                  // host: an upper bound of every sequence's length
  int64_t total_tokens = 0;             // host: cu_seqlens[num_seqs]
  const int32_t* slots = nullptr;       // device

  void* pool = nullptr;
  int64_t num_slots = 0;
  int64_t slot_stride_bytes = 0;
  int64_t recurrent_offset = 0;
  DType state_type = DType::kF32;

  // q, k, b, v, w are input_type (f32 or bf16); g is always f32.
  DType input_type = DType::kF32;
  const void* q = nullptr;
  const void* k = nullptr;
  const float* g = nullptr;
  const void* b = nullptr;
  const void* v = nullptr;
  const void* w = nullptr;
  int64_t q_stride = 0, k_stride = 0, g_stride = 0, b_stride = 0, v_stride = 0, w_stride = 0;

  float* o = nullptr;
  int64_t o_stride = 0;

  float* workspace = nullptr;
  int64_t workspace_floats = 0;

  // State-column blocks per value head in phase 2 (2, 4 or 8: 64, 32 or 16 columns per block);
  // 0 picks by the grid size. kBf16 always uses 64 columns (one warpgroup per block). (Phase 1
  // computes in fp32 FMA, phase 2's products run on the tensor cores as `precision` says;
  // bench/NOTES.md records the retired versions.)
  int splits = 0;
  // Which phases run (benchmarks time them apart): 1 = phase 1 only, 2 = phase 2 only (reads a
  // workspace phase 1 filled), 3 = both. Anything but 3 leaves o or the state incomplete.
  int phase_mask = 3;
  Gdn2PrefillPrecision precision = Gdn2PrefillPrecision::kFp32;
};

// Workspace floats the chunked launcher needs for this batch at `precision` (kBf16 needs about
// a third of what kFp32 / kTf32 need: a bf16 workspace and no chunk-start states).
int64_t Gdn2ChunkWorkspaceFloats(const Gdn2PrefillShape& shape, int64_t total_tokens,
                                 int num_seqs,
                                 Gdn2PrefillPrecision precision = Gdn2PrefillPrecision::kFp32);

absl::Status LaunchGdn2ChunkPrefill(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& args,
                                    cudaStream_t stream);

// Token-serial recurrence over the same arguments (workspace unused).
absl::Status LaunchGdn2SerialPrefill(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& args,
                                     cudaStream_t stream);

// Floating-point operations of the chunkwise algorithm for one sequence of `len` tokens and all
// value heads (matrix products and the forward substitution; 2 per multiply-add).
double Gdn2ChunkPrefillFlops(const Gdn2PrefillShape& shape, int64_t len);

}  // namespace deltaserve::cuda
