// Fused GDN-2 decode step (MODEL_SPEC.md sections 1 and 2, steps 2-7) for every active slot and
// value head in one launch (Mode::kFused) or in two overlapping launches (Mode::kStreamed).
//
// Per sequence b (one new token) and value head hv (key head kh = hv / (HV/H)):
//   conv:   q^, k^, v = SiLU(causal depthwise conv over [history(W-1 rows), raw input])
//           and the history shifts by one row (oldest row dropped, raw input appended);
//   norms:  q = q^ / sqrt(|q^|^2 + 1e-6) * dk^-1/2,  k = k^ / sqrt(|k^|^2 + 1e-6);
//   gates:  alpha = exp(-exp(A_log[kh]) * softplus(f + dt_bias)), b = sigmoid(b~) (x2 when
//           allow_neg_eigval), w = sigmoid(w~);
//   state:  S_bar = diag(alpha) S;  u = w*v - S_bar^T (b*k);  S = S_bar + k u^T;
//           o = S_bar^T q + (k.q) u  (the state is read once and written once);
//   output: y = rmsnorm(o) * o_norm * act(z + z_bias),  act = SiLU or sigmoid.
//
// Tensors (all device memory; "row stride" is in elements; rows are sequences of the batch):
//   slots       int32 [batch]                 slot index of each row; any order, gaps allowed,
//                                             distinct, each in [0, num_slots)
//   pool        bytes [num_slots, slot_stride_bytes]; within a slot, at byte offsets:
//     recurrent   state_type [HV, dk, dv] row-major (16-byte aligned)
//     conv_q      f32 [W-1, key_dim]   oldest row first (4-byte aligned)
//     conv_k      f32 [W-1, key_dim]
//     conv_v      f32 [W-1, value_dim]
//   q_raw, k_raw, b_raw           raw_type [batch, key_dim]   (own row strides)
//   v_raw, w_raw                  raw_type [batch, value_dim] (own row strides)
//   f_raw                         f32 [batch, key_dim]
//   z_raw                         f32 [batch, value_dim]
//                                 (f_raw, z_raw: [batch, gate_rank] when gate_rank > 0)
//   q_conv_w, k_conv_w  f32 [key_dim, W];  v_conv_w  f32 [value_dim, W]  (tap W-1 = current token)
//   a_log f32 [H];  dt_bias f32 [key_dim];  z_bias f32 [value_dim];  o_norm f32 [dv]
//   y           y_type [batch, value_dim] (row stride y_stride), head-major (hv*dv + j)
//
// Supported shapes: dk in {32, 64, 128}; dv / splits in {16, 32, 64, 128} ({16, 32} when
// dk = 32); HV a multiple of H with (HV/H) * splits <= 8; 1 <= W <= 8.
// The launcher checks shapes, alignments and that every region lies inside the slot stride; it
// returns InvalidArgument naming the offending field, never aborts. Slots out of range are
// skipped by the kernel (the caller validates slot indices on the host).
//
// Thread-safety: launches are ordered on `stream`; concurrent launches touching the same slot
// are a caller error.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

struct Gdn2DecodeShape {
  int num_heads = 16;      // H
  int num_v_heads = 16;    // HV
  int head_k_dim = 128;    // dk
  int head_v_dim = 128;    // dv
  int conv_size = 4;       // W
  bool allow_neg_eigval = false;
  bool gate_sigmoid = false;  // output-gate activation: false = SiLU, true = sigmoid
  float norm_eps = 1e-5f;     // output RMSNorm epsilon

  int key_dim() const { return num_heads * head_k_dim; }
  int value_dim() const { return num_v_heads * head_v_dim; }
};

struct Gdn2DecodeArgs {
  int batch = 0;
  const int32_t* slots = nullptr;

  void* pool = nullptr;
  int64_t num_slots = 0;
  int64_t slot_stride_bytes = 0;
  int64_t recurrent_offset = 0;
  int64_t conv_q_offset = 0;
  int64_t conv_k_offset = 0;
  int64_t conv_v_offset = 0;
  DType state_type = DType::kF32;

  // The projection outputs q~, k~, v~, b~, w~: f32 or bf16 (raw_type, one type for all five).
  const void* q_raw = nullptr;
  const void* k_raw = nullptr;
  const void* v_raw = nullptr;
  const void* b_raw = nullptr;
  const void* w_raw = nullptr;
  DType raw_type = DType::kF32;
  const float* f_raw = nullptr;
  const float* z_raw = nullptr;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0, b_stride = 0, w_stride = 0, f_stride = 0,
          z_stride = 0;

  const float* q_conv_w = nullptr;
  const float* k_conv_w = nullptr;
  const float* v_conv_w = nullptr;
  const float* a_log = nullptr;
  const float* dt_bias = nullptr;
  const float* z_bias = nullptr;
  const float* o_norm = nullptr;

  void* y = nullptr;
  int64_t y_stride = 0;
  DType y_type = DType::kBF16;

  // Blocks per value head, each owning dv/splits columns of the state (kFused only; 0 = 1, which
  // measured fastest at every batch, bench/NOTES.md v5).
  int splits = 0;

  // Kernel arrangement (bench/NOTES.md has the measurements of each version, including the
  // retired ones: fused v1-v4, prepared, pipelined, one-launch streamed).
  // kFused: one launch does everything (conv, norms, gates, recurrence, output norm) with the
  //   state tile in registers; the blocks of one (sequence, key head) form a cluster. The
  //   history and weight loads are issued before the wait of an overlapped launch (state_ready),
  //   the norms are folded into the reductions (one block reduction) and the cluster meets once.
  //   Fastest below ~1024 (sequence, head) items with fp32 state.
  // kStreamed: a persistent prep kernel (conv + history shift, norms, gates, per sequence and
  //   key head) writes records into `prep` and publishes each one; beside it, one recurrence
  //   block per (sequence, value head) (splits = 1), launched as a programmatic dependent, waits
  //   for its own record only. Its whole state tile arrives in shared memory by bulk
  //   asynchronous copies, is updated from there and written back with 16-byte streaming
  //   stores. Few registers per thread, so several tiles are in flight per SM: the large-batch
  //   arrangement.
  enum class Mode { kFused, kStreamed };
  Mode mode = Mode::kFused;
  // kStreamed scratch of at least Gdn2DecodePrepFloats(shape, batch) floats, 16-byte aligned,
  // zero-filled once before its first use (cudaMemset): it holds per-row ready words that every
  // completed launch leaves zero again, whatever the batch. One scratch must not serve two
  // launches that may run at the same time.
  float* prep = nullptr;
  int64_t prep_floats = 0;

  // Launch as a programmatic dependent of the kernel before it on `stream`, so this launch
  // overlaps that kernel's tail; the kernel waits for it (cudaGridDependencySynchronize) before
  // it reads any memory, unless `state_ready` is also set (kFused; kStreamed always waits first).
  bool overlap_launch = false;
  // With overlap_launch: the caller guarantees that the kernel immediately before this launch on
  // `stream` writes neither `slots`, nor the pool regions (state, conv histories) of these slots,
  // nor the weights (conv weights, a_log, dt_bias, z_bias, o_norm, f_up, z_up), so they may be
  // read before that kernel finishes. The raw inputs (q_raw .. z_raw) are still read after it.
  bool state_ready = false;

  // Low-rank gate projections inside the launch (Mode::kFused only; MODEL_SPEC's f_proj.1 and
  // g_proj.1). With gate_rank > 0, f_raw and z_raw hold the rank-r inputs f0, g0
  // (f32 [batch, gate_rank], rows f_stride / z_stride apart) and the kernel forms
  //   f = bf16(f0) . f_up^T,  z~ = bf16(g0) . z_up^T   (fp32 sums)
  // with f_up bf16 [key_dim, gate_rank] and z_up bf16 [value_dim, gate_rank], row-major and
  // 16-byte aligned; gate_rank is a multiple of 8, at most 128. This saves the separate product
  // launch at small batch; every block reads its heads' rows of f_up / z_up (before the wait of
  // an overlapped launch), so large batches keep the separate product.
  int gate_rank = 0;
  const void* f_up = nullptr;
  const void* z_up = nullptr;
};

// Scratch floats kStreamed needs for `batch` rows: batch * Gdn2DecodePrepFloats(shape, 1). Row
// b's part starts at b times the per-row count, whatever the batch; it ends with the row's
// num_heads 32-bit ready words, padded to a multiple of 4 (the words that must start zero).
int64_t Gdn2DecodePrepFloats(const Gdn2DecodeShape& shape, int batch);

absl::Status LaunchGdn2Decode(const Gdn2DecodeShape& shape, const Gdn2DecodeArgs& args,
                              cudaStream_t stream);

// Whether kStreamed fetches the state tiles of a `batch`-row launch under the L2 evict_last
// policy and stores them with write-back stores (large launches; see kStateEvictLastBytes in
// gdn2_decode.cu). For peers that mimic it.
bool Gdn2DecodeStateEvictLast(const Gdn2DecodeShape& shape, int batch, DType state_type);

// Bytes one launch must move through device memory at the minimum: state read + written,
// conv histories read + written, raw inputs read (q~ .. w~ as raw_type, f and z~ f32), output
// written. For bandwidth reports.
int64_t Gdn2DecodeBytes(const Gdn2DecodeShape& shape, int batch, DType state_type, DType y_type,
                        DType raw_type = DType::kF32);

}  // namespace deltaserve::cuda
