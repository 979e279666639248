// State pool tests: slot accounting, reset on reuse, budget sizing, and swap copies through a
// real HostStateStorage.
#include "engine/slot_allocator.h"

#include <cstring>

#include "engine/host_state_storage.h"
#include "engine/swap_store.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 16;
  c.padding_multiple = 1;
  c.padded_vocab_size = 16;
  c.n_layer = 2;
  c.n_embd = 8;
  c.intermediate_size = 8;
  c.gdn2_per_layer = 2;  // hybrid: layer 1 is SWA
  c.gdn2.num_heads = 2;
  c.gdn2.num_v_heads = 2;
  c.gdn2.head_k_dim = 4;
  c.gdn2.head_v_dim = 4;
  c.gdn2.conv_size = 3;
  c.swa.n_head = 2;
  c.swa.n_query_groups = 2;
  c.swa.head_size = 4;
  c.swa.local_window = 8;
  return c;
}

std::unique_ptr<HostStateStorage> MakeStorage(int slots, StateDtype dtype = StateDtype::kF32) {
  auto s = HostStateStorage::Create(StateLayout(TinyConfig(), dtype), slots);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

TEST(SlotAllocatorTest, AcquireReleaseAccounting) {
  auto storage = MakeStorage(3);
  SlotAllocator a(storage.get());
  EXPECT_EQ(a.slots_total(), 3);
  EXPECT_EQ(a.slots_used(), 0);
  EXPECT_EQ(a.bytes_per_slot(), storage->layout().slot_bytes());
  EXPECT_EQ(*a.Acquire(), 0);
  EXPECT_EQ(*a.Acquire(), 1);
  EXPECT_EQ(*a.Acquire(), 2);
  EXPECT_EQ(a.slots_used(), 3);
  absl::StatusOr<int> none = a.Acquire();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  a.Release(1);
  a.Release(0);
  EXPECT_EQ(a.slots_free(), 2);
  EXPECT_EQ(*a.Acquire(), 0);  // lowest free first
  EXPECT_EQ(*a.Acquire(), 1);
  EXPECT_TRUE(a.in_use(2));
}

TEST(SlotAllocatorTest, SlotIsResetOnReuse) {
  auto storage = MakeStorage(2);
  SlotAllocator a(storage.get());
  const int slot = *a.Acquire();
  std::memset(storage->SlotData(slot), 0x5A, storage->bytes_per_slot());
  a.Release(slot);
  ASSERT_EQ(*a.Acquire(), slot);
  const std::byte* d = storage->SlotData(slot);
  for (size_t i = 0; i < storage->bytes_per_slot(); ++i) {
    ASSERT_EQ(d[i], std::byte{0}) << "byte " << i;
  }
}

TEST(SlotAllocatorTest, BudgetSizing) {
  const StateLayout f32(TinyConfig(), StateDtype::kF32);
  const StateLayout bf16(TinyConfig(), StateDtype::kBF16);
  EXPECT_LE(bf16.slot_bytes(), f32.slot_bytes());
  EXPECT_EQ(*SlotsForMemoryBudget(f32, f32.slot_bytes() * 10 + 5), 10);
  EXPECT_EQ(*SlotsForMemoryBudget(f32, f32.slot_bytes() * 10, 4), 4);
  EXPECT_EQ(SlotsForMemoryBudget(f32, f32.slot_bytes() - 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The 1.3B reference (MODEL_SPEC.md section 6): 18 layers x (16 heads x 128 x 128 fp32 state
  // = 1 MiB, plus three conv histories of 3 x 2048 fp32) plus the position block.
  ModelConfig big;
  const StateLayout ref(big, StateDtype::kF32);
  EXPECT_EQ(ref.slot_bytes(), 18u * (16 * 128 * 128 * 4 + 3 * 3 * 2048 * 4) + 256);
  const StateLayout ref_bf16(big, StateDtype::kBF16);
  EXPECT_EQ(ref_bf16.slot_bytes(), 18u * (16 * 128 * 128 * 2 + 3 * 3 * 2048 * 4) + 256);
  EXPECT_EQ(*SlotsForMemoryBudget(ref, size_t{40} << 30), static_cast<int>((size_t{40} << 30) / ref.slot_bytes()));
}

// The segments a device pool stores apart: consecutive and covering the slot, one per GDN-2
// layer holding all four of its regions, then one tail holding the position and the SWA rings.
TEST(StateLayoutTest, SegmentsCoverTheSlot) {
  ModelConfig hybrid = TinyConfig();
  hybrid.n_layer = 5;  // GDN-2 on 0, 2, 4; SWA on 1, 3
  for (const StateDtype dt : {StateDtype::kF32, StateDtype::kBF16}) {
    const StateLayout l(hybrid, dt);
    const std::vector<StateSegment>& seg = l.segments();
    ASSERT_EQ(seg.size(), 4u);
    size_t at = 0;
    for (const StateSegment& g : seg) {
      EXPECT_EQ(g.begin, at);
      EXPECT_EQ(g.begin % StateLayout::kRegionAlign, 0u);
      at += g.bytes;
    }
    EXPECT_EQ(at, l.slot_bytes());
    int gdn2 = 0;
    for (int li = 0; li < l.num_layers(); ++li) {
      const LayerStateRegions& r = l.layer(li);
      if (r.is_gdn2) {
        const int i = l.SegmentOf(r.gdn2.recurrent);
        EXPECT_EQ(i, gdn2++) << "layer " << li;
        EXPECT_EQ(seg[i].begin, r.gdn2.recurrent);
        for (size_t o : {r.gdn2.conv_q, r.gdn2.conv_k, r.gdn2.conv_v})
          EXPECT_EQ(l.SegmentOf(o), i) << "layer " << li;
      } else {
        EXPECT_EQ(l.SegmentOf(r.swa.k_ring), 3) << "layer " << li;
        EXPECT_EQ(l.SegmentOf(r.swa.v_ring), 3) << "layer " << li;
      }
    }
    EXPECT_EQ(l.SegmentOf(l.position_offset()), 3);
    EXPECT_EQ(seg[3].begin, l.position_offset());
  }
  // The rings' storage follows the state dtype unless chosen apart; bf16 halves each ring.
  const size_t ring_elems = StateLayout(hybrid, StateDtype::kF32).ring_elems();
  for (const StateDtype dt : {StateDtype::kF32, StateDtype::kBF16}) {
    for (const StateDtype ring : {StateDtype::kF32, StateDtype::kBF16}) {
      const StateLayout l(hybrid, dt, ring);
      EXPECT_EQ(l.state_dtype(), dt);
      EXPECT_EQ(l.ring_dtype(), ring);
      const SwaStateRegions& r = l.layer(1).swa;
      EXPECT_EQ(r.v_ring - r.k_ring, (ring_elems * StateDtypeBytes(ring) + 255) / 256 * 256);
      EXPECT_EQ(l.segments()[0].bytes, StateLayout(hybrid, dt).segments()[0].bytes);
    }
    EXPECT_EQ(StateLayout(hybrid, dt).ring_dtype(), dt);
  }
  // A pure GDN-2 model: one segment per layer and a tail of the position alone.
  const StateLayout ref(ModelConfig{}, StateDtype::kF32);
  ASSERT_EQ(ref.segments().size(), 19u);
  EXPECT_EQ(ref.segments()[0].bytes, size_t{16} * 128 * 128 * 4 + 3 * 3 * 2048 * 4);
  EXPECT_EQ(ref.segments()[18].bytes, StateLayout::kRegionAlign);
}

TEST(SwapStoreTest, RoundTripIntoAnotherSlot) {
  auto storage = MakeStorage(3);
  SlotAllocator a(storage.get());
  const int src = *a.Acquire();
  for (size_t i = 0; i < storage->bytes_per_slot(); ++i) {
    storage->SlotData(src)[i] = static_cast<std::byte>(i * 7 + 1);
  }
  SwapStore swap(storage->bytes_per_slot(), 1);
  absl::StatusOr<int> h = swap.SwapOut(*storage, src);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(swap.entries(), 1);
  EXPECT_EQ(swap.SwapOut(*storage, src).status().code(), absl::StatusCode::kResourceExhausted);
  a.Release(src);
  const int other = *a.Acquire();  // src again (lowest), reset
  const int dst = *a.AcquireForRestore();
  EXPECT_NE(dst, src);
  ASSERT_TRUE(swap.SwapIn(*h, *storage, dst).ok());
  EXPECT_EQ(swap.entries(), 0);
  for (size_t i = 0; i < storage->bytes_per_slot(); ++i) {
    ASSERT_EQ(storage->SlotData(dst)[i], static_cast<std::byte>(i * 7 + 1));
    ASSERT_EQ(storage->SlotData(other)[i], std::byte{0});
  }
}

}  // namespace
}  // namespace deltaserve
