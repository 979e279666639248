// StateLayout: where each layer's decode state lives inside one slot (MODEL_SPEC.md section 6).
//
// A slot's canonical form is one contiguous block of `slot_bytes` bytes. Host pools store slots
// in this form, and it is the format of every copy between pools and to host memory (swap-out,
// fork), so a slot moves byte-for-byte between backends. Every region starts at a multiple of
// kRegionAlign bytes.
//
// Order within the slot: every GDN-2 layer's regions (in layer order), then `position`, then
// every SWA layer's rings. That order cuts the slot into segments (`segments()`): one per GDN-2
// layer, holding all four of its regions, and one tail from `position` to the end. A device pool
// may store each segment of all slots together (DeviceStateStorage does), so that a decode launch
// over consecutive slots reads one dense range of a layer's state; a kernel then addresses a
// segment as its own pool with the segment's size as slot stride and offsets from its start.
//
// GDN-2 layer regions:
//   recurrent  [HV, dk, dv]   state_dtype (fp32 default, or bf16), row-major, S[h][i][j]
//   conv_q     [W-1, key_dim]   fp32, pre-activation inputs q~, row 0 the oldest, row W-2 newest
//   conv_k     [W-1, key_dim]   fp32, same order
//   conv_v     [W-1, value_dim] fp32, same order
// SWA layer regions:
//   k_ring     [window, n_query_groups, head_size] ring_dtype, keys after RoPE; token at
//                                                   absolute position p lives in row p % window
//   v_ring     [window, n_query_groups, head_size] ring_dtype
// ring_dtype is the state dtype unless chosen apart (e.g. fp32 recurrent states beside bf16
// rings, which are most of a hybrid model's slot). bf16 storage rounds to nearest even; as with
// the recurrent state, a step computes in fp32 and only what it stores is rounded.
// Per slot (once): `position` int64, the number of tokens this slot has consumed; SWA uses it
// for RoPE positions and ring indices.
//
// A reset slot is all-zero bytes (zero state, empty histories, position 0).
// Thread-safety: immutable; share freely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/model_config.h"

namespace deltaserve {

enum class StateDtype { kF32, kBF16 };

inline size_t StateDtypeBytes(StateDtype d) { return d == StateDtype::kF32 ? 4 : 2; }

struct Gdn2StateRegions {
  size_t recurrent = 0;  // byte offset within the slot
  size_t conv_q = 0;
  size_t conv_k = 0;
  size_t conv_v = 0;
};

struct SwaStateRegions {
  size_t k_ring = 0;
  size_t v_ring = 0;
};

// A byte range [begin, begin + bytes) of the canonical slot that a device pool may store apart.
struct StateSegment {
  size_t begin = 0;
  size_t bytes = 0;
};

struct LayerStateRegions {
  bool is_gdn2 = true;
  Gdn2StateRegions gdn2;
  SwaStateRegions swa;
};

class StateLayout {
 public:
  static constexpr size_t kRegionAlign = 256;

  // ring_dtype: the SWA rings' storage (unset: state_dtype).
  StateLayout(const ModelConfig& config, StateDtype state_dtype,
              std::optional<StateDtype> ring_dtype = std::nullopt);

  StateDtype state_dtype() const { return state_dtype_; }
  StateDtype ring_dtype() const { return ring_dtype_; }
  size_t slot_bytes() const { return slot_bytes_; }
  size_t position_offset() const { return position_offset_; }
  const LayerStateRegions& layer(int i) const { return layers_[i]; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  // Consecutive, covering [0, slot_bytes): one per GDN-2 layer, then the tail (position, SWA).
  const std::vector<StateSegment>& segments() const { return segments_; }
  // Index into segments() of the segment that holds byte `offset` of the slot.
  int SegmentOf(size_t offset) const;

  // Element counts, for kernels and tests.
  size_t recurrent_elems() const { return recurrent_elems_; }  // HV*dk*dv per GDN-2 layer
  size_t conv_rows() const { return conv_rows_; }              // W-1
  size_t ring_elems() const { return ring_elems_; }            // window*n_query_groups*head_size

 private:
  StateDtype state_dtype_;
  StateDtype ring_dtype_;
  std::vector<LayerStateRegions> layers_;
  std::vector<StateSegment> segments_;
  size_t position_offset_ = 0;
  size_t slot_bytes_ = 0;
  size_t recurrent_elems_ = 0;
  size_t conv_rows_ = 0;
  size_t ring_elems_ = 0;
};

}  // namespace deltaserve
