// Benchmark of state round-trip access patterns: how close a kernel that reads each fp32
// [128, 128] decode state tile of a slot pool into shared memory and writes it back in place can
// get to the device-to-device copy bandwidth, depending on how the tiles are cut into blocks and
// copies. No arithmetic; the questions are the memory system's. One layer, H = 16 heads,
// slots in a random order, sets of slots rotated so that L2 cannot hold the state (as in
// gdn2_decode_bench), evict_last fetches from 128 MiB of state (as the streamed recurrence does).
//
// Patterns (128 threads per block unless noted):
//   tile             one block per tile: 4 bulk copies of 16 KiB, written back once all landed
//                    (the streamed recurrence's pattern; its reductions over dk need every row
//                    of a column before any of the column is written)
//   tile_rows_early  the same, each 16 KiB row piece written back as soon as it lands (a copy's
//                    freedom, which the recurrence does not have)
//   tile_cols_early  one block per tile, 4 groups of 32 columns (a bulk copy per row and group,
//                    128 bytes), each group written back as soon as it lands (the recurrence
//                    could do this: a column needs only its own rows)
//   halves           one block per 64 columns of a tile (a bulk copy per row, 256 bytes)
//   quarters         one block per 32 columns (a bulk copy per row, 128 bytes)
//   halves_tmap      halves fetched as one tensor-map box each
//   regs_tile        one block of 256 threads per tile, held in registers (16-byte loads), a
//                    reduction over its rows (as the recurrence needs), then written back
//   regs_halves      the same per 64 columns (128 threads)
//   regs_quarters    the same per 32 columns (128 threads): small units, so the last wave of
//                    a launch is short
//   regs_quarters_nored  regs_quarters without the reduction: each thread writes its pieces
//                    once all of its own loads landed (a copy's freedom)
//   rows{16,32,64}   one block of 128 threads per ROWS contiguous rows of a tile (ROWS x 512
//                    bytes in one piece), in registers, each row summed by its warp and written
//                    back: the pattern of a state stored transposed ([dv, dk]), where the
//                    recurrence's reductions run along a row
// Ratios are against the 1 GiB copy measured at the start of the run.
//
// Usage: state_pattern_bench [out.json]
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "kernels/cuda/async_copy.cuh"

using namespace deltaserve::bench;
using deltaserve::cuda::BulkCopy;
using deltaserve::cuda::BulkCopyWithPolicy;
using deltaserve::cuda::L2EvictLastPolicy;
using deltaserve::cuda::MbarArriveExpectTx;
using deltaserve::cuda::MbarInit;
using deltaserve::cuda::MbarWaitParity;
using deltaserve::cuda::SharedAddr;

namespace {

constexpr int kDim = 128;                 // dk = dv
constexpr int kHeads = 16;
constexpr int kThreads = 128;
constexpr int64_t kEvictLastBytes = int64_t{128} << 20;

struct Args {
  const int32_t* slots;
  char* pool;
  int64_t slot_stride;
  int num_slots;
  bool evict_last;
  float scale;  // 0: the reduction of the register patterns is added times zero
};

__device__ __forceinline__ void Copy(uint32_t dst, const void* src, int bytes, uint32_t bar,
                                     bool evict_last) {
  if (evict_last) {
    BulkCopyWithPolicy(dst, src, bytes, bar, L2EvictLastPolicy());
  } else {
    BulkCopy(dst, src, bytes, bar);
  }
}

// One block per (tile, part of COLS columns), GROUPS barriers; group g is written back once it
// has landed. ROW_PIECES: groups are contiguous row ranges (COLS = 128 only), else column ranges
// fetched by one bulk copy per row (a single group of whole rows is fetched in 16 KiB pieces).
template <int COLS, int GROUPS, bool ROW_PIECES>
__global__ void __launch_bounds__(kThreads) BulkPatternKernel(Args a) {
  extern __shared__ __align__(128) unsigned char tile[];
  __shared__ __align__(8) uint64_t bars[GROUPS];
  constexpr int kParts = kDim / COLS;
  constexpr int kGroupCols = ROW_PIECES ? COLS : COLS / GROUPS;
  constexpr int kGroupBytes = kDim * COLS * 4 / GROUPS;
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim + part * COLS;
  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int g = 0; g < GROUPS; ++g) {
      MbarInit(SharedAddr(&bars[g]));
      MbarArriveExpectTx(SharedAddr(&bars[g]), kGroupBytes);
    }
  }
  __syncthreads();
  const uint32_t base = SharedAddr(tile);
  if (ROW_PIECES || kGroupCols == kDim) {
    if (tid == 0) {
      for (int off = 0; off < kDim * kDim * 4; off += 16384)
        Copy(base + off, reinterpret_cast<char*>(state) + off, 16384,
             SharedAddr(&bars[off / kGroupBytes]), a.evict_last);
    }
  } else if (tid < 32) {
    for (int g = 0; g < GROUPS; ++g) {
      for (int r = tid; r < kDim; r += 32)
        Copy(base + g * kGroupBytes + r * kGroupCols * 4, state + r * kDim + g * kGroupCols,
             kGroupCols * 4, SharedAddr(&bars[g]), a.evict_last);
    }
  }
  for (int g = 0; g < GROUPS; ++g) {
    MbarWaitParity(SharedAddr(&bars[g]), 0);
    const float4* in = reinterpret_cast<const float4*>(tile + g * kGroupBytes);
    constexpr int kVecs = kGroupCols / 4;  // float4 per row of the group
#pragma unroll 4
    for (int i = tid; i < kGroupBytes / 16; i += kThreads) {
      float* row = ROW_PIECES ? state + (g * kGroupBytes / 16 + i) / kVecs * kDim
                              : state + (i / kVecs) * kDim + g * kGroupCols;
      __stcs(reinterpret_cast<float4*>(row) + i % kVecs, in[i]);
    }
  }
}

// One block of THREADS per (tile, part of COLS columns). Each thread loads its float4 pieces
// (rows tid / L + k * rows_per_pass, L = COLS / 4 threads per row) into registers; with REDUCE
// the block sums every column over all rows (shuffles, then shared memory) and adds the sum
// times a.scale to each element before the streaming stores, so no store may precede the last
// load of the block.
template <int COLS, int THREADS, bool REDUCE>
__global__ void __launch_bounds__(THREADS) RegisterPatternKernel(Args a) {
  constexpr int kParts = kDim / COLS, kLanes = COLS / 4, kRowsPerPass = THREADS / kLanes;
  constexpr int kPasses = kDim / kRowsPerPass, kWarps = THREADS / 32;
  __shared__ float4 partial[kWarps][kLanes];
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim + part * COLS;
  const int tid = threadIdx.x, lane = tid % kLanes, row0 = tid / kLanes;
  float4 v[kPasses];
#pragma unroll
  for (int k = 0; k < kPasses; ++k)
    v[k] = *reinterpret_cast<const float4*>(state + (row0 + k * kRowsPerPass) * kDim + lane * 4);
  float4 add = make_float4(0.f, 0.f, 0.f, 0.f);
  if (REDUCE) {
    float4 s = v[0];
#pragma unroll
    for (int k = 1; k < kPasses; ++k) {
      s.x += v[k].x;
      s.y += v[k].y;
      s.z += v[k].z;
      s.w += v[k].w;
    }
#pragma unroll
    for (int off = kLanes; off < 32; off *= 2) {
      s.x += __shfl_xor_sync(0xffffffffu, s.x, off);
      s.y += __shfl_xor_sync(0xffffffffu, s.y, off);
      s.z += __shfl_xor_sync(0xffffffffu, s.z, off);
      s.w += __shfl_xor_sync(0xffffffffu, s.w, off);
    }
    if (tid % 32 < kLanes) partial[tid / 32][lane] = s;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      add.x += partial[w][lane].x * a.scale;
      add.y += partial[w][lane].y * a.scale;
      add.z += partial[w][lane].z * a.scale;
      add.w += partial[w][lane].w * a.scale;
    }
  }
#pragma unroll
  for (int k = 0; k < kPasses; ++k) {
    const float4 o = make_float4(v[k].x + add.x, v[k].y + add.y, v[k].z + add.z, v[k].w + add.w);
    __stcs(reinterpret_cast<float4*>(state + (row0 + k * kRowsPerPass) * kDim + lane * 4), o);
  }
}

// One block of 128 threads per ROWS contiguous rows of a tile; warp w holds rows
// w * ROWS / 4 + k, a float4 of each per lane, sums each row over the warp and adds the sum times
// a.scale before the streaming stores.
template <int ROWS>
__global__ void __launch_bounds__(kThreads) RowPatternKernel(Args a) {
  constexpr int kParts = kDim / ROWS, kRowsPerWarp = ROWS / 4;
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* rows = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                (int64_t{head} * kDim + part * ROWS + warp * kRowsPerWarp) * kDim + lane * 4;
  float4 v[kRowsPerWarp];
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) v[k] = *reinterpret_cast<const float4*>(rows + k * kDim);
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) {
    float s = v[k].x + v[k].y + v[k].z + v[k].w;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    s *= a.scale;
    __stcs(reinterpret_cast<float4*>(rows + k * kDim),
           make_float4(v[k].x + s, v[k].y + s, v[k].z + s, v[k].w + s));
  }
}

// One block per (tile, part of COLS columns), fetched as one tensor-map box of COLS x 128.
template <int COLS>
__global__ void __launch_bounds__(kThreads) TensorMapPatternKernel(const __grid_constant__
                                                                   CUtensorMap map, Args a) {
  extern __shared__ __align__(128) unsigned char tile[];
  __shared__ __align__(8) uint64_t bar;
  constexpr int kParts = kDim / COLS;
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim + part * COLS;
  if (threadIdx.x == 0) {
    MbarInit(SharedAddr(&bar));
    MbarArriveExpectTx(SharedAddr(&bar), kDim * COLS * 4);
    const uint32_t dst = SharedAddr(tile), b = SharedAddr(&bar);
    const uint64_t m = reinterpret_cast<uint64_t>(&map);
    if (a.evict_last) {
      asm volatile(
          "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
          ".L2::cache_hint [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
          "l"(m), "r"(part * COLS), "r"(head * kDim), "r"(slot), "r"(b), "l"(L2EvictLastPolicy())
          : "memory");
    } else {
      asm volatile(
          "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
          " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
          "l"(m), "r"(part * COLS), "r"(head * kDim), "r"(slot), "r"(b)
          : "memory");
    }
  }
  __syncthreads();
  MbarWaitParity(SharedAddr(&bar), 0);
  const float4* in = reinterpret_cast<const float4*>(tile);
  constexpr int kVecs = COLS / 4;
#pragma unroll 4
  for (int i = threadIdx.x; i < kDim * kVecs; i += kThreads)
    __stcs(reinterpret_cast<float4*>(state + (i / kVecs) * kDim) + i % kVecs, in[i]);
}

// The pool's state as a 3D tensor (128 columns, 16 x 128 rows, slots) with COLS x 128 boxes.
CUtensorMap StateTensorMap(char* pool, int64_t slot_stride, int num_slots, int cols) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found;
  BENCH_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                              cudaEnableDefault, &found));
  if (found != cudaDriverEntryPointSuccess) {
    std::fprintf(stderr, "no cuTensorMapEncodeTiled\n");
    std::exit(2);
  }
  auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  CUtensorMap map;
  const cuuint64_t dims[3] = {kDim, cuuint64_t{kHeads} * kDim, static_cast<cuuint64_t>(num_slots)};
  const cuuint64_t strides[2] = {kDim * 4, static_cast<cuuint64_t>(slot_stride)};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(cols), kDim, 1};
  const cuuint32_t steps[3] = {1, 1, 1};
  if (encode(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, pool, dims, strides, box, steps,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) !=
      CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed\n");
    std::exit(2);
  }
  return map;
}

struct Pattern {
  const char* name;
  const void* kernel;
  int cols;         // columns per block
  bool tensor_map;
  int threads = kThreads;
  bool registers = false;  // no dynamic shared memory
};

struct Row {
  std::string pattern;
  int batch, blocks_per_sm;
  double us, ratio;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string out_path = argc > 1 ? argv[1] : "state_pattern_bench.json";
  const DeviceInfo dev = GetDeviceInfo();
  const double copy_bw0 = CopyBandwidth(size_t{1} << 30);
  std::printf("device: %s, %d SMs; device-to-device copy %.3f TB/s\n", dev.name.c_str(),
              dev.sms, copy_bw0 / 1e12);

  const int num_slots = 2304;
  const int64_t slot_stride = int64_t{kHeads} * kDim * kDim * 4 + 25600;  // + histories' room
  char* pool = nullptr;
  BENCH_CUDA(cudaMalloc(&pool, num_slots * slot_stride));
  BENCH_CUDA(cudaMemset(pool, 0, num_slots * slot_stride));
  std::vector<int32_t> perm(num_slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 rng(1234);
  std::shuffle(perm.begin(), perm.end(), rng);
  perm.insert(perm.end(), perm.begin(), perm.begin() + 1024);  // wrap-around sets
  int32_t* d_perm = nullptr;
  BENCH_CUDA(cudaMalloc(&d_perm, perm.size() * sizeof(int32_t)));
  BENCH_CUDA(cudaMemcpy(d_perm, perm.data(), perm.size() * sizeof(int32_t),
                        cudaMemcpyHostToDevice));
  const CUtensorMap half_map = StateTensorMap(pool, slot_stride, num_slots, 64);

  const Pattern patterns[] = {
      {"tile", reinterpret_cast<const void*>(BulkPatternKernel<128, 1, false>), 128, false},
      {"tile_rows_early", reinterpret_cast<const void*>(BulkPatternKernel<128, 4, true>), 128,
       false},
      {"tile_cols_early", reinterpret_cast<const void*>(BulkPatternKernel<128, 4, false>), 128,
       false},
      {"halves", reinterpret_cast<const void*>(BulkPatternKernel<64, 1, false>), 64, false},
      {"quarters", reinterpret_cast<const void*>(BulkPatternKernel<32, 1, false>), 32, false},
      {"halves_tmap", reinterpret_cast<const void*>(TensorMapPatternKernel<64>), 64, true},
      {"regs_tile", reinterpret_cast<const void*>(RegisterPatternKernel<128, 256, true>), 128,
       false, 256, true},
      {"regs_halves", reinterpret_cast<const void*>(RegisterPatternKernel<64, 128, true>), 64,
       false, 128, true},
      {"regs_quarters", reinterpret_cast<const void*>(RegisterPatternKernel<32, 128, true>), 32,
       false, 128, true},
      {"regs_quarters_nored",
       reinterpret_cast<const void*>(RegisterPatternKernel<32, 128, false>), 32, false, 128,
       true},
      {"rows16", reinterpret_cast<const void*>(RowPatternKernel<16>), 16, false, 128, true},
      {"rows32", reinterpret_cast<const void*>(RowPatternKernel<32>), 32, false, 128, true},
      {"rows64", reinterpret_cast<const void*>(RowPatternKernel<64>), 64, false, 128, true},
  };
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<Row> rows;
  for (int batch : {32, 64, 128, 256, 512, 1024}) {
    const int64_t state_bytes = int64_t{batch} * kHeads * kDim * kDim * 4;
    const int sets = static_cast<int>(std::max<int64_t>(
        2, std::min<int64_t>(num_slots / batch, (int64_t{256} << 20) / state_bytes + 1)));
    const int launches = std::max(sets, 20);
    for (const Pattern& p : patterns) {
      const int smem = p.registers ? 0 : kDim * p.cols * 4;
      BENCH_CUDA(cudaFuncSetAttribute(p.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      smem));
      BENCH_CUDA(cudaFuncSetAttribute(p.kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      cudaSharedmemCarveoutMaxShared));
      int per_sm = 0;
      BENCH_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, p.kernel, p.threads,
                                                               smem));
      Args a{nullptr, pool, slot_stride, num_slots, state_bytes >= kEvictLastBytes, 0.0f};
      const dim3 grid(kHeads * (kDim / p.cols), batch);
      int launch_i = 0;
      auto body = [&](int n) {
        for (int i = 0; i < n; ++i) {
          a.slots = d_perm + (static_cast<int64_t>(launch_i++ % sets) * batch) % num_slots;
          void* plain[] = {&a};
          void* mapped[] = {const_cast<CUtensorMap*>(&half_map), &a};
          BENCH_CUDA(cudaLaunchKernel(p.kernel, grid, dim3(p.threads),
                                      p.tensor_map ? mapped : plain, smem, stream));
        }
      };
      body(3);
      BENCH_CUDA(cudaStreamSynchronize(stream));
      const double t = TimeGraph(stream, [&] { body(launches); }, launches);
      rows.push_back({p.name, batch, per_sm, t * 1e6, 2.0 * state_bytes / t / copy_bw0});
    }
  }
  BENCH_CUDA(cudaGetLastError());
  const double copy_bw1 = CopyBandwidth(size_t{1} << 30);

  FILE* f = OpenJsonReport(out_path, "state_pattern", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"copy_bw_bytes_per_s\": [%.6e, %.6e],\n", copy_bw0, copy_bw1);
  std::fprintf(f, "  \"timing\": \"CUDA graph of N launches rotating over disjoint slot sets, "
                  "median of 15 replays / N; bytes = fp32 state read + written\",\n");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"pattern\": \"%s\", \"batch\": %d, \"blocks_per_sm\": %d, "
                 "\"us_per_launch\": %.3f, \"ratio_to_copy\": %.4f}%s\n",
                 r.pattern.c_str(), r.batch, r.blocks_per_sm, r.us, r.ratio,
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);

  std::printf("copy bandwidth: %.3f TB/s at start, %.3f TB/s at end\n", copy_bw0 / 1e12,
              copy_bw1 / 1e12);
  std::printf("%-16s %6s %7s %10s %7s\n", "pattern", "batch", "per SM", "us/launch", "ratio");
  for (const Row& r : rows)
    std::printf("%-16s %6d %7d %10.2f %7.3f\n", r.pattern.c_str(), r.batch, r.blocks_per_sm,
                r.us, r.ratio);
  cudaFree(d_perm);
  cudaFree(pool);
  return 0;
}
