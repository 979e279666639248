// Sliding-window attention decode (MODEL_SPEC.md section 3, SWA mixer) for one new token per
// sequence, over each slot's ring of keys and values, with NeoX RoPE.
//
// Per sequence b at position p = slot position (tokens consumed before this one):
//   q_h = RoPE(q_h, p), k = RoPE(k_g, p) for query head h of group g = h / (n_head / groups);
//   the new (k, v) is written to ring row p % window (by the group's first head);
//   y_h = softmax_j(q_h . k_j / sqrt(head_size)) v_j over positions j in [max(0, p-window+1), p].
//
// Tensors (device memory; strides in elements):
//   slots   int32 [batch], distinct, in [0, num_slots)
//   pool    bytes [num_slots, slot_stride_bytes]; in a slot at byte offsets:
//     k_ring, v_ring  shape.ring_type [window, groups, head_size] (16-byte aligned), row
//                     p % window; a bf16 ring stores the new k and v rounded, the attention
//                     uses them in fp32 (swa_ring.cuh)
//     position        int64 (8-byte aligned), read only (advanced once per step elsewhere)
//   qkv     f32 [batch, (n_head + 2*groups) * head_size] (row stride qkv_stride); per group g:
//           its n_head/groups query heads, then k, then v, head_size each
//   y       y_type [batch, n_head * head_size] (row stride y_stride), head-major
//   scratch f32, SwaDecodeScratchFloats(...) entries (split-K partial results)
//   counters uint32 [>= batch * n_head]: zero before the first launch; every launch leaves them
//            zero (the last block of each (sequence, head) resets its counter)
// Supported: head_size in {32, 64, 128}; rope_dims even and <= head_size; window >= 1.
//
// Thread-safety: launches are ordered on `stream`; concurrent launches must not share scratch or
// counters.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

struct SwaDecodeShape {
  int n_head = 18;
  int n_query_groups = 18;
  int head_size = 128;
  int window = 2048;
  int rope_dims = 128;
  double rope_base = 10000.0;
  DType ring_type = DType::kF32;  // storage of the rings: f32 or bf16

  int64_t qkv_width() const { return int64_t{n_head + 2 * n_query_groups} * head_size; }
};

struct SwaDecodeArgs {
  int batch = 0;
  const int32_t* slots = nullptr;
  void* pool = nullptr;
  int64_t num_slots = 0;
  int64_t slot_stride_bytes = 0;
  int64_t k_ring_offset = 0;
  int64_t v_ring_offset = 0;
  int64_t position_offset = 0;
  const float* qkv = nullptr;
  int64_t qkv_stride = 0;
  void* y = nullptr;
  int64_t y_stride = 0;
  DType y_type = DType::kBF16;
  float* scratch = nullptr;
  int64_t scratch_floats = 0;
  uint32_t* counters = nullptr;
  int64_t num_counters = 0;
  int splits = 0;  // key-range splits per (sequence, head); 0 picks by batch size
  // Launch as a programmatic dependent of the kernel before it on the stream: before waiting
  // for it, the launch reads slots, positions and ring rows of earlier positions, so that
  // kernel must write none of them (it may write qkv). The kernel after may start early too.
  bool overlap_launch = false;
};

int SwaDecodeSplits(const SwaDecodeShape& shape, int batch, int requested);
int64_t SwaDecodeScratchFloats(const SwaDecodeShape& shape, int batch, int splits);

absl::Status LaunchSwaDecode(const SwaDecodeShape& shape, const SwaDecodeArgs& args,
                             cudaStream_t stream);

}  // namespace deltaserve::cuda
