// Short causal depthwise convolution over prompts (MODEL_SPEC.md section 2, step 2) for packed
// variable-length batches, with the conv history carried in each sequence's slot, so that a
// prompt chunk continues exactly where the previous chunk (or decode step) stopped.
//
// Per sequence s (tokens cu_seqlens[s] .. cu_seqlens[s+1]-1, positions p = 0..len-1), channel c:
//   y_p[c] = act( sum_{j=0..W-1} weight[c, j] * x_{p-W+1+j}[c] ),  act = SiLU or identity,
// where x at a position p < 0 is history row W-1+p of slot slots[s] (rows oldest first: row
// W-2 is the newest). Afterwards the history holds the last W-1 raw inputs of [history; x].
//
// Tensors (device memory; strides in elements):
//   cu_seqlens  int32 [num_seqs + 1];  slots int32 [num_seqs] (distinct, in [0, num_slots))
//   pool        bytes [num_slots, slot_stride_bytes]; history f32 [W-1, channels] at
//               history_offset (4-byte aligned) -- the layout of gdn2_decode.h's conv_q/k/v
//   x           f32 [total_tokens, channels] (row stride x_stride)
//   weight      f32 [channels, W]  (tap W-1 multiplies the current token)
//   y           f32 [total_tokens, channels] (row stride y_stride); must not alias x
// Supported: 1 <= W <= 8. The launcher returns InvalidArgument naming the offending field.
//
// Thread-safety: launches are ordered on `stream` (two kernels: outputs, then the history
// update); concurrent launches touching the same slot are a caller error.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

struct ShortConvPrefillArgs {
  int num_seqs = 0;
  const int32_t* cu_seqlens = nullptr;  // device
  int max_seq_len = 0;                  // host: an upper bound of every sequence's length
  const int32_t* slots = nullptr;       // device

  void* pool = nullptr;
  int64_t num_slots = 0;
  int64_t slot_stride_bytes = 0;
  int64_t history_offset = 0;

  int channels = 0;
  int conv_size = 4;  // W
  const float* x = nullptr;
  int64_t x_stride = 0;
  const float* weight = nullptr;
  float* y = nullptr;
  int64_t y_stride = 0;
  bool silu = true;
};

absl::Status LaunchShortConvPrefill(const ShortConvPrefillArgs& args, cudaStream_t stream);

}  // namespace deltaserve::cuda
