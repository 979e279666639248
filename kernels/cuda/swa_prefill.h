// Sliding-window attention prefill (MODEL_SPEC.md section 3, SWA mixer) for packed prompts or
// prompt chunks, continuing from each slot's ring of keys and values (the layout of
// swa_decode.h), so that decode and later chunks see exactly what a token-by-token run leaves.
//
// Per sequence s with P = the slot's position (tokens consumed before this call; read only, the
// caller advances it by the sequence length afterwards) and new tokens at positions
// p = P .. P+len-1, for query head h of group g = h / (n_head / groups):
//   q = RoPE(q_h, p), k = RoPE(k_g, p) (NeoX halves over rope_dims, base rope_base);
//   y_h(p) = softmax_j(q . k_j / sqrt(head_size)) v_j over j in [max(0, p-window+1), p], where
//   keys/values of positions < P come from the ring (row j % window) and the others from qkv;
//   afterwards ring row p % window holds (RoPE'd k, v) of each of the last min(len, window)
//   new positions.
//
// Tensors (device memory; strides in elements):
//   cu_seqlens int32 [num_seqs + 1]; slots int32 [num_seqs] (distinct, in [0, num_slots))
//   pool     bytes [num_slots, slot_stride_bytes]; k_ring, v_ring shape.ring_type [window,
//            groups, head_size] (16-byte aligned); position int64 (8-byte aligned). A bf16
//            ring stores keys and values rounded; the new tokens' enter the attention in fp32
//            (swa_ring.cuh)
//   qkv      f32 [total_tokens, (n_head + 2*groups) * head_size] (row stride qkv_stride), per
//            group: its query heads, then k, then v
//   y        f32 [total_tokens, n_head * head_size] (row stride y_stride)
//   scratch  f32 [SwaPrefillScratchFloats(...)] (RoPE'd queries and keys of the new tokens)
// Supported: head_size in {32, 64, 96, 128}; rope_dims even and <= head_size; window >= 1.
// Attention runs on the tensor cores (tiles of 64 queries, 3xTF32 products: fp32-level
// accuracy) when `tensor_cores` is set and qkv rows are 16-byte aligned (qkv 16-byte aligned,
// qkv_stride a multiple of 4; y 8-byte aligned, y_stride even); otherwise with fp32 FMA, one
// warp per (token, head).
//
// Thread-safety: launches are ordered on `stream`; concurrent launches touching the same slot
// are a caller error.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/swa_decode.h"

namespace deltaserve::cuda {

struct SwaPrefillArgs {
  int num_seqs = 0;
  const int32_t* cu_seqlens = nullptr;  // device
  int64_t total_tokens = 0;             // host
  const int32_t* slots = nullptr;       // device
  void* pool = nullptr;
  int64_t num_slots = 0;
  int64_t slot_stride_bytes = 0;
  int64_t k_ring_offset = 0;
  int64_t v_ring_offset = 0;
  int64_t position_offset = 0;
  const float* qkv = nullptr;
  int64_t qkv_stride = 0;
  float* y = nullptr;
  int64_t y_stride = 0;
  float* scratch = nullptr;
  int64_t scratch_floats = 0;
  bool tensor_cores = true;  // false: the fp32-FMA attention kernel (reference, benchmarks)
};

int64_t SwaPrefillScratchFloats(const SwaDecodeShape& shape, int64_t total_tokens);

absl::Status LaunchSwaPrefill(const SwaDecodeShape& shape, const SwaPrefillArgs& args,
                              cudaStream_t stream);

}  // namespace deltaserve::cuda
