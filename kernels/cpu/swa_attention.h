// Sliding-window causal attention over a ring buffer, for ONE key/value group of one sequence
// over T consecutive tokens (MODEL_SPEC.md sections 3 and 6).
//
// Token t is at absolute position p = pos0 + t. For each t in order: its key and value
// (already RoPE'd key) are written to ring row p % window, then each of the group's
// `q_heads` query heads attends to the positions max(0, p - window + 1) .. p, with scale
// 1/sqrt(head_size) and softmax in fp32 (max-subtracted): positions before pos0 read from the
// ring, the call's own tokens from k / v. With `ring_bf16` the ring stores bf16 (round to
// nearest even), so only keys and values of earlier calls enter the attention rounded.
//
// Layout (strides in elements): q head h of token t at q + t*ld_q + h*head_size; k/v of token t
// at k + t*ld_kv, v + t*ld_kv; ring row r of this group at element r*ld_ring of k_ring (and
// v_ring), of the ring's type; output of head h for token t at out + t*ld_out + h*head_size.
// `scratch` needs `window` floats.
// Thread-safety: pure function; different groups (disjoint ring columns) may run concurrently.
#pragma once

#include <cstdint>

namespace deltaserve::cpu {

struct SwaGroupArgs {
  int64_t T = 0;
  int64_t pos0 = 0;
  int window = 0;
  int q_heads = 0;
  int head_size = 0;
  const float* q = nullptr;
  int64_t ld_q = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld_kv = 0;
  void* k_ring = nullptr;  // float, or bf16 bits (uint16_t) with ring_bf16
  void* v_ring = nullptr;
  bool ring_bf16 = false;
  int64_t ld_ring = 0;
  float* out = nullptr;
  int64_t ld_out = 0;
  float* scratch = nullptr;
};

void SwaGroupAttention(const SwaGroupArgs& a);

}  // namespace deltaserve::cpu
