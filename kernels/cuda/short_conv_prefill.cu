// Short-convolution prefill kernels; see short_conv_prefill.h for the contract.
#include "kernels/cuda/short_conv_prefill.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

constexpr int kMaxW = 8;
constexpr int kThreads = 128;    // channels per block
constexpr int kTileTokens = 64;  // tokens per block of the output kernel

// Outputs: grid (channel blocks, token tiles, sequences).
__global__ void __launch_bounds__(kThreads) ShortConvOutKernel(
    const int32_t* __restrict__ cu, const int32_t* __restrict__ slots,
    const char* __restrict__ pool, int64_t slot_stride, int64_t hist_offset, int channels, int W,
    const float* __restrict__ x, int64_t x_stride, const float* __restrict__ weight,
    float* __restrict__ y, int64_t y_stride, bool silu) {
  const int c = blockIdx.x * kThreads + threadIdx.x;
  const int s = blockIdx.z;
  if (c >= channels) return;
  const int64_t start = cu[s], len = cu[s + 1] - start;
  const int64_t p0 = static_cast<int64_t>(blockIdx.y) * kTileTokens;
  if (p0 >= len) return;
  const float* hist = reinterpret_cast<const float*>(pool + static_cast<int64_t>(slots[s]) *
                                                                slot_stride + hist_offset);
  float w[kMaxW];
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) w[j] = j < W ? weight[static_cast<int64_t>(c) * W + j] : 0.f;
  // Sliding window of the W-1 inputs before the current position (oldest first).
  float win[kMaxW] = {};
#pragma unroll
  for (int j = 0; j < kMaxW - 1; ++j) {
    if (j < W - 1) {
      const int64_t p = p0 - (W - 1) + j;
      win[j] = p >= 0 ? x[(start + p) * x_stride + c]
                      : hist[(W - 1 + p) * static_cast<int64_t>(channels) + c];
    }
  }
  const int64_t p1 = p0 + kTileTokens < len ? p0 + kTileTokens : len;
  for (int64_t p = p0; p < p1; ++p) {
    const float cur = x[(start + p) * x_stride + c];
    float acc = w[W - 1] * cur;
#pragma unroll
    for (int j = 0; j < kMaxW - 1; ++j)
      if (j < W - 1) acc = fmaf(w[j], win[j], acc);
    if (silu) acc = acc / (1.f + __expf(-acc));
    y[(start + p) * y_stride + c] = acc;
#pragma unroll
    for (int j = 0; j < kMaxW - 2; ++j)
      if (j < W - 2) win[j] = win[j + 1];
#pragma unroll
    for (int j = 0; j < kMaxW - 1; ++j)
      if (j == W - 2) win[j] = cur;
  }
}

// History update after the outputs: grid (channel blocks, sequences). Row r takes position
// len - (W-1) + r of [history; x]; for positions < 0 that is old row len + r >= r, so updating
// rows in increasing order reads every old row before it is overwritten.
__global__ void __launch_bounds__(kThreads) ShortConvHistoryKernel(
    const int32_t* __restrict__ cu, const int32_t* __restrict__ slots, char* __restrict__ pool,
    int64_t slot_stride, int64_t hist_offset, int channels, int W, const float* __restrict__ x,
    int64_t x_stride) {
  const int c = blockIdx.x * kThreads + threadIdx.x;
  const int s = blockIdx.y;
  if (c >= channels) return;
  const int64_t start = cu[s], len = cu[s + 1] - start;
  if (len == 0) return;
  float* hist = reinterpret_cast<float*>(pool + static_cast<int64_t>(slots[s]) * slot_stride +
                                         hist_offset);
  for (int r = 0; r < W - 1; ++r) {
    const int64_t p = len - (W - 1) + r;
    hist[static_cast<int64_t>(r) * channels + c] =
        p >= 0 ? x[(start + p) * x_stride + c] : hist[(len + r) * channels + c];
  }
}

}  // namespace

absl::Status LaunchShortConvPrefill(const ShortConvPrefillArgs& a, cudaStream_t stream) {
  auto bad = [](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("short conv prefill: ", what));
  };
  if (a.conv_size < 1 || a.conv_size > kMaxW) return bad("conv_size must be in [1, 8]");
  if (a.num_seqs < 0 || a.num_seqs > 65535) return bad("num_seqs must be in [0, 65535]");
  if (a.channels <= 0) return bad("channels must be > 0");
  if (a.num_seqs == 0) return absl::OkStatus();
  if (a.max_seq_len <= 0) return bad("max_seq_len must be > 0");
  if (a.cu_seqlens == nullptr || a.slots == nullptr || a.pool == nullptr || a.x == nullptr ||
      a.weight == nullptr || a.y == nullptr)
    return bad("cu_seqlens, slots, pool, x, weight and y must be set");
  if (a.x_stride < a.channels || a.y_stride < a.channels)
    return bad("x_stride and y_stride must be >= channels");
  if (a.history_offset < 0 || a.history_offset % 4 != 0 || a.slot_stride_bytes % 4 != 0 ||
      a.history_offset + static_cast<int64_t>(a.conv_size - 1) * a.channels * 4 >
          a.slot_stride_bytes)
    return bad("history_offset must be 4-byte aligned and the history must fit in the slot");
  if (a.num_slots <= 0) return bad("num_slots must be > 0");
  const int cblocks = (a.channels + kThreads - 1) / kThreads;
  const int tiles = (a.max_seq_len + kTileTokens - 1) / kTileTokens;
  ShortConvOutKernel<<<dim3(cblocks, tiles, a.num_seqs), kThreads, 0, stream>>>(
      a.cu_seqlens, a.slots, static_cast<const char*>(a.pool), a.slot_stride_bytes,
      a.history_offset, a.channels, a.conv_size, a.x, a.x_stride, a.weight, a.y, a.y_stride,
      a.silu);
  if (absl::Status st = LaunchStatus("ShortConvOutKernel"); !st.ok()) return st;
  if (a.conv_size == 1) return absl::OkStatus();
  ShortConvHistoryKernel<<<dim3(cblocks, a.num_seqs), kThreads, 0, stream>>>(
      a.cu_seqlens, a.slots, static_cast<char*>(a.pool), a.slot_stride_bytes, a.history_offset,
      a.channels, a.conv_size, a.x, a.x_stride);
  return LaunchStatus("ShortConvHistoryKernel");
}

}  // namespace deltaserve::cuda
