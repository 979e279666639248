#include "engine/state_layout.h"

namespace deltaserve {
namespace {

size_t AlignUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

}  // namespace

StateLayout::StateLayout(const ModelConfig& config, StateDtype state_dtype,
                         std::optional<StateDtype> ring_dtype)
    : state_dtype_(state_dtype), ring_dtype_(ring_dtype.value_or(state_dtype)) {
  const Gdn2Config& g = config.gdn2;
  const SwaConfig& s = config.swa;
  recurrent_elems_ = static_cast<size_t>(g.num_v_heads) * g.head_k_dim * g.head_v_dim;
  conv_rows_ = g.conv_size > 1 ? static_cast<size_t>(g.conv_size - 1) : 0;
  ring_elems_ = static_cast<size_t>(s.local_window) * s.n_query_groups * s.head_size;

  size_t offset = 0;
  auto take = [&offset](size_t bytes) {
    size_t at = offset;
    offset = AlignUp(offset + bytes, kRegionAlign);
    return at;
  };
  layers_.resize(config.n_layer);
  for (int i = 0; i < config.n_layer; ++i) {
    LayerStateRegions& r = layers_[i];
    r.is_gdn2 = config.IsGdn2Layer(i);
    if (!r.is_gdn2) continue;
    const size_t begin = offset;
    r.gdn2.recurrent = take(recurrent_elems_ * StateDtypeBytes(state_dtype));
    r.gdn2.conv_q = take(conv_rows_ * g.key_dim() * sizeof(float));
    r.gdn2.conv_k = take(conv_rows_ * g.key_dim() * sizeof(float));
    r.gdn2.conv_v = take(conv_rows_ * g.value_dim() * sizeof(float));
    segments_.push_back({begin, offset - begin});
  }
  const size_t tail = offset;
  position_offset_ = take(sizeof(int64_t));
  for (LayerStateRegions& r : layers_) {
    if (r.is_gdn2) continue;
    r.swa.k_ring = take(ring_elems_ * StateDtypeBytes(ring_dtype_));
    r.swa.v_ring = take(ring_elems_ * StateDtypeBytes(ring_dtype_));
  }
  segments_.push_back({tail, offset - tail});
  slot_bytes_ = offset;
}

int StateLayout::SegmentOf(size_t offset) const {
  int i = 0;
  while (i + 1 < static_cast<int>(segments_.size()) && offset >= segments_[i + 1].begin) ++i;
  return i;
}

}  // namespace deltaserve
