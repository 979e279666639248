// GDN-2 decode: the launcher (argument checks, mode dispatch) and the streamed recurrence kernel
// of Mode::kStreamed; the fused kernel and the prep kernel are in gdn2_decode_kernels.cu. See
// gdn2_decode.h for the contract and bench/NOTES.md for the measurements of every version,
// including the retired ones (fused v1-v4, prepared, pipelined, one-launch streamed).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/gdn2_decode.h"
#include "kernels/cuda/gdn2_decode_common.cuh"
#include "kernels/cuda/global_timer.cuh"
#include "kernels/cuda/ready_word.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

using namespace gdn2_detail;

// kStreamed, kernel 2: one block per (sequence, value head), whole tile (splits = 1). Thread 0
// starts one bulk asynchronous copy (TMA) of the contiguous [DK, DV] tile into shared memory,
// completing on an mbarrier; meanwhile the block loads its epilogue operands and waits for its
// prep record (the prep kernel runs beside this one). Pass 1 reads the tile from shared memory
// for the two reductions over dk; pass 2 re-reads it and streams S_bar + k u^T to global memory.
// No state array lives in registers, so an SM holds as many blocks as shared memory and the prep
// blocks' registers allow (3 for fp32 128x128 tiles, 4 for bf16) and their copies overlap each
// other's compute and stores.
constexpr int kBulkChunkBytes = 16384;
// From this many bytes of state per launch, the tiles are fetched with an L2 evict_last policy,
// so a line read early in the block's life is still in L2 when its update is stored, and those
// lines are stored with plain write-back stores (the others with the streaming hint). Measured
// on an H200 (bench/NOTES.md, "evict_last" and "store hints"): with streaming stores everywhere,
// evict_last gained 2 % at 256 MB of fp32 state and 4 % at 1 GB but lost 2 % at 32-64 MB; a
// streaming store to an evict_last line cost 0.5-1.7 % at 128-1024 fp32 / bf16 rows; with
// write-back stores, evict_last from 64 MB gains 0.5 % at 64 fp32 rows (2.5 % end to end at
// batch 64), and streaming stores stay 1.3 % faster for bf16 at 64 rows (32 MB).
constexpr int64_t kStateEvictLastBytes = int64_t{64} << 20;
// The first wave of tiles starts its copies spread over this many nanoseconds (block i of the
// wave waits i / wave of it). Started together, the first wave's 25 MB (fp32, 132 SMs) land
// together after ~8 us; then every block reduces and stores while no read is in flight, and the
// waves after it stay in step. Spread out, early blocks store while later ones read. Measured
// on an H200 (bench/NOTES.md, "first wave"), fp32 us per launch at batch 64 / 256: no ramp
// 45.3 / 159.8, 8 us 44.0 / 158.3, 12 us 43.1 / 157.5, 16 us 43.3 / 157.1. Where memory is
// slower the wave takes longer to land, so the ramp scales with kRampPeakBytesPerS over the
// device's peak bandwidth (memory clock and bus width): ~17.6 us on an H100 (3.35 TB/s), whose
// best measured was 16-20 us (bench/NOTES.md, "The first-wave ramp on an H100").
constexpr int kFirstWaveRampNs = 12000;
constexpr double kRampPeakBytesPerS = 4.8e12;  // the H200's peak, where kFirstWaveRampNs was set

// kFirstWaveRampNs scaled to the current device's peak memory bandwidth.
absl::StatusOr<int> FirstWaveRampNs() {
  int device = 0, clock_khz = 0, bus_bits = 0;
  DS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  DS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device));
  DS_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  const double peak = 2.0 * clock_khz * 1e3 * bus_bits / 8.0;  // double data rate
  if (peak <= 0) return kFirstWaveRampNs;
  return static_cast<int>(std::clamp(kFirstWaveRampNs * kRampPeakBytesPerS / peak, 4e3, 40e3));
}

// 128 threads and at most 64 registers each: three fp32 tiles per SM take 24K registers,
// leaving room for the prep kernel's resident blocks beside them.
constexpr int kStreamedThreads = 128;

// Spins until the ready word is nonzero (acquire), then takes one consumer away. A record that
// never arrives is a bug, not a state to wait out: after about 2^34 cycles (seconds) the kernel
// traps, so the launch fails instead of hanging the device.
__device__ __forceinline__ void WaitPrepRecord(unsigned* ready) {
  const long long start = clock64();
  while (LoadAcquire(ready) == 0) {
    if (clock64() - start > (1ll << 34)) __trap();
    __nanosleep(64);
  }
  atomicSub(ready, 1u);
}

template <typename T, int DK, int DV>
__global__ void __launch_bounds__(Tile<T, DK, DV, kStreamedThreads>::NT, 8)
    Gdn2RecurrenceStreamedKernel(const Params p) {
  using TL = Tile<T, DK, DV, kStreamedThreads>;
  constexpr int VEC = TL::VEC, CG = TL::CG, NT = TL::NT, ROWS = TL::ROWS, RG = TL::RG,
                NW = TL::NW;
  static_assert(DV <= NT, "one output column per thread");
  constexpr int kTileBytes = DK * DV * static_cast<int>(sizeof(T));
  static_assert(kTileBytes % 16 == 0, "bulk copies move multiples of 16 bytes");
  extern __shared__ __align__(128) unsigned char streamed_smem[];
  const T* tile = reinterpret_cast<const T*>(streamed_smem);
  __shared__ float q_s[DK], k_s[DK], a_s[DK], bk_s[DK];
  __shared__ float u_s[DV];
  __shared__ float red[NW][DV];
  __shared__ float scratch[NW];
  __shared__ float kq_s;
  __shared__ __align__(8) uint64_t full;

  const int b = blockIdx.y;
  const int hv = blockIdx.x;
  const int kh = hv / p.G;
  const int tid = threadIdx.x;
  const int col0 = hv * DV;

  // The last block of the grid waits for the whole prep grid before it ends, so this kernel
  // completes after the prep kernel (and its history stores) as well: what follows on the stream
  // may rely on both.
  const bool last_block = blockIdx.x == gridDim.x - 1 && blockIdx.y == gridDim.y - 1;
  // Weights of the epilogue (z itself is read once the tile has landed).
  float zbias = 0.0f, onorm = 0.0f;
  if (tid < DV) {
    zbias = p.z_bias[col0 + tid];
    onorm = p.o_norm[tid];
  }
  const int slot = p.slots[b];
  if (slot < 0 || slot >= p.num_slots) {  // before any barrier: the whole block leaves
    if (last_block) cudaGridDependencySynchronize();
    return;
  }
  char* base = p.pool + static_cast<int64_t>(slot) * p.slot_stride;
  T* state = reinterpret_cast<T*>(base + p.rec_off) + static_cast<int64_t>(hv) * DK * DV;

  const uint32_t bar = SharedAddr(&full);
  if (tid == 0) {
    const int linear = blockIdx.y * gridDim.x + blockIdx.x;
    if (linear < p.ramp_blocks) SleepNs(int64_t{linear} * p.ramp_ns / p.ramp_blocks);
    MbarInit(bar);
    MbarArriveExpectTx(bar, kTileBytes);
    const uint32_t dst = SharedAddr(streamed_smem);
#pragma unroll
    for (int off = 0; off < kTileBytes; off += kBulkChunkBytes) {
      const int n = kTileBytes - off < kBulkChunkBytes ? kTileBytes - off : kBulkChunkBytes;
      const char* src = reinterpret_cast<const char*>(state) + off;
      if (p.state_evict_last) {
        BulkCopyWithPolicy(dst + off, src, n, bar, L2EvictLastPolicy());
      } else {
        BulkCopy(dst + off, src, n, bar);
      }
    }
    WaitPrepRecord(PrepReady(p, b, DK) + kh);
  }
  __syncthreads();  // the record of (b, kh) is published
  // L2 loads: this SM's L1 may hold lines of records published after they were cached.
  const float* rec = PrepRecord(p, b, kh, DK);
  for (int i = tid; i < DK; i += NT) {
    q_s[i] = __ldcg(rec + i);
    k_s[i] = __ldcg(rec + DK + i);
    a_s[i] = __ldcg(rec + 2 * DK + i);
    bk_s[i] = __ldcg(rec + 3 * DK + i);
  }
  float wv = 0.0f;
  if (tid < DV) wv = __ldcg(PrepWv(p, b, DK) + col0 + tid);
  if (tid == 0) kq_s = __ldcg(rec + 4 * DK);
  __syncthreads();  // mbarrier initialised; prep vectors in shared memory
  MbarWaitParity(bar, 0);
  // The output gate's input, written before the prep kernel started. Read only now, used in the
  // epilogue: a load still in flight at the two waits above delayed them (measured; bench/
  // NOTES.md, "z read after the tile wait").
  float zz = 0.0f;
  if (tid < DV) zz = p.z_raw[static_cast<int64_t>(b) * p.z_st + col0 + tid];

  // Pass 1: decay and the two reductions over dk, r = S_bar^T (b*k) and oq = S_bar^T q.
  const int cgi = tid % CG;
  const int rg = tid / CG;
  float r[VEC], oq[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) r[v] = oq[v] = 0.0f;
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    float sv[VEC];
    SmemUnitToFloat<T>(tile + i * DV + cgi * VEC, sv);
    const float a = a_s[i], bk = bk_s[i], qq = q_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const float d = sv[v] * a;
      r[v] += d * bk;
      oq[v] += d * qq;
    }
  }
  WarpSumColumns<CG, VEC>(r, oq);
  const int warp = tid / 32, lane = tid % 32;
  // One reduction buffer, used twice: first r, then oq.
  if (lane < CG) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) red[warp][lane * VEC + v] = r[v];
  }
  __syncthreads();
  float rr = 0.0f;
  if (tid < DV) {
#pragma unroll
    for (int w = 0; w < NW; ++w) rr += red[w][tid];
  }
  __syncthreads();
  if (lane < CG) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) red[warp][lane * VEC + v] = oq[v];
  }
  __syncthreads();
  float o = 0.0f, ss = 0.0f;
  if (tid < DV) {
    float oo = 0.0f;
#pragma unroll
    for (int w = 0; w < NW; ++w) oo += red[w][tid];
    const float u = wv - rr;
    o = oo + kq_s * u;
    u_s[tid] = u;
    ss = o * o;
  }
  ss = BlockSum<NW>(ss, scratch);  // ends with a barrier: u_s visible

  // Pass 2: S = S_bar + k u^T, streamed out.
  float uu[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) uu[v] = u_s[cgi * VEC + v];
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    float sv[VEC];
    SmemUnitToFloat<T>(tile + i * DV + cgi * VEC, sv);
    const float a = a_s[i], kk = k_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) sv[v] = sv[v] * a + kk * uu[v];
    T* dst = state + static_cast<int64_t>(i) * DV + cgi * VEC;
    if (p.state_evict_last) {
      StateVec<T>::template Store</*streaming=*/false>(dst, sv);
    } else {
      StateVec<T>::Store(dst, sv);
    }
  }

  if (tid < DV) {
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(DV) + p.eps);
    const float act = p.gate_sigmoid ? Sigmoid(zz + zbias) : Silu(zz + zbias);
    const float yv = o * inv * onorm * act;
    const int64_t yi = static_cast<int64_t>(b) * p.y_st + col0 + tid;
    if (p.y_bf16) {
      reinterpret_cast<__nv_bfloat16*>(p.y)[yi] = __float2bfloat16_rn(yv);
    } else {
      reinterpret_cast<float*>(p.y)[yi] = yv;
    }
  }
  if (last_block) cudaGridDependencySynchronize();
}

template <typename T, int DK, int DV>
absl::Status LaunchStreamed(const Params& p, int batch, cudaStream_t stream) {
  using TL = Tile<T, DK, DV, kStreamedThreads>;
  auto kernel = Gdn2RecurrenceStreamedKernel<T, DK, DV>;
  const int smem = DK * DV * static_cast<int>(sizeof(T));
  static bool attr_set = false;  // per instantiation; idempotent, so a benign race
  if (!attr_set) {
    DS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    attr_set = true;
  }
  // Tiles resident at once on the device beside the prep kernel's blocks (at most
  // kPrepBlocksPerSm per SM): the first wave. A launch of at most this many blocks is one wave,
  // which a ramp would only delay. Blocks past the first wave must not wait (they start late
  // already), so this must not overestimate. Computed for the first device it runs on.
  static int wave[2] = {0, 0};  // per instantiation and conv-width kernel; benign race
  static int ramp_ns = 0;
  int& first_wave = wave[p.W == 4 ? 0 : 1];
  if (ramp_ns == 0) {
    const absl::StatusOr<int> ramp = FirstWaveRampNs();
    if (!ramp.ok()) return ramp.status();
    ramp_ns = *ramp;
  }
  if (first_wave == 0) {
    int device = 0, sms = 0, regs_sm = 0, per_sm = 0, prep_regs = 0;
    DS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    DS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    DS_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&regs_sm, cudaDevAttrMaxRegistersPerMultiprocessor, device));
    DS_CUDA_RETURN_IF_ERROR(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, TL::NT, smem));
    const absl::Status prep_status = gdn2_detail::PrepRegistersPerSm(p, DK, DV, &prep_regs);
    if (!prep_status.ok()) return prep_status;
    cudaFuncAttributes fa;
    DS_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&fa, kernel));
    per_sm = std::min(per_sm, (regs_sm - prep_regs) / BlockRegisters(TL::NT, fa.numRegs));
    first_wave = std::max(1, sms * per_sm);
  }
  Params q = p;
  q.ramp_blocks = int64_t{p.HV} * batch > first_wave ? first_wave : 0;
  q.ramp_ns = ramp_ns;
  const absl::Status prep = gdn2_detail::LaunchPrep(q, DK, DV, batch, stream);
  if (!prep.ok()) return prep;
  return LaunchKernel("Gdn2RecurrenceStreamedKernel", kernel, dim3(q.HV, batch, 1), dim3(TL::NT),
                      smem, stream, /*programmatic=*/true, q);
}

}  // namespace

int64_t Gdn2DecodePrepFloats(const Gdn2DecodeShape& shape, int batch) {
  return int64_t{batch} * PrepRowFloats(shape.num_heads, shape.head_k_dim, shape.value_dim());
}

bool Gdn2DecodeStateEvictLast(const Gdn2DecodeShape& shape, int batch, DType state_type) {
  const int64_t state_bytes = static_cast<int64_t>(shape.num_v_heads) * shape.head_k_dim *
                              shape.head_v_dim * DTypeBytes(state_type);
  return int64_t{batch} * state_bytes >= kStateEvictLastBytes;
}

int64_t Gdn2DecodeBytes(const Gdn2DecodeShape& shape, int batch, DType state_type,
                        DType y_type, DType raw_type) {
  const int64_t kd = shape.key_dim(), vd = shape.value_dim();
  const int64_t state = static_cast<int64_t>(shape.num_v_heads) * shape.head_k_dim *
                        shape.head_v_dim * DTypeBytes(state_type) * 2;
  const int64_t conv = static_cast<int64_t>(shape.conv_size - 1) * (2 * kd + vd) * 4 * 2;
  const int64_t inputs = (3 * kd + 2 * vd) * DTypeBytes(raw_type) + (kd + vd) * 4;
  const int64_t out = vd * DTypeBytes(y_type);
  return batch * (state + conv + inputs + out);
}

absl::Status LaunchGdn2Decode(const Gdn2DecodeShape& shape, const Gdn2DecodeArgs& a,
                              cudaStream_t stream) {
  const int H = shape.num_heads, HV = shape.num_v_heads, dk = shape.head_k_dim,
            dv = shape.head_v_dim, W = shape.conv_size;
  if (H <= 0 || HV <= 0 || HV % H != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("gdn2 decode: num_v_heads (", HV, ") must be a positive multiple of num_heads (", H, ")"));
  if (W < 1 || W > kMaxConv)
    return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: conv_size ", W, " not in [1, 8]"));
  if (a.batch < 0 || a.batch > 65535)
    return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: batch ", a.batch, " not in [0, 65535]"));
  if (a.batch == 0) return absl::OkStatus();
  const int G = HV / H;
  using Mode = Gdn2DecodeArgs::Mode;
  const bool streamed = a.mode == Mode::kStreamed;
  if (a.mode != Mode::kFused && !streamed)
    return absl::InvalidArgumentError("gdn2 decode: unknown mode");
  // Fused: one block per (sequence, value head) unless splits asks for more (measured fastest
  // at every batch, bench/NOTES.md v5). Streamed: whole tiles.
  const int S = a.splits > 0 ? a.splits : 1;
  if (streamed && S > 1)
    return absl::InvalidArgumentError("gdn2 decode: the streamed mode takes splits = 1");
  if (dv % S != 0)
    return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: splits ", S, " must divide head_v_dim ", dv));
  if (a.raw_type != DType::kF32 && a.raw_type != DType::kBF16)
    return absl::InvalidArgumentError("gdn2 decode: raw_type must be f32 or bf16");
  if (a.state_ready && !a.overlap_launch)
    return absl::InvalidArgumentError("gdn2 decode: state_ready requires overlap_launch");
  if (!streamed && G * S > kMaxCluster)
    return absl::InvalidArgumentError(absl::StrCat(
        "gdn2 decode: (num_v_heads/num_heads) * splits = ", G * S, " exceeds the cluster limit 8"));
  if (!streamed && dk % (G * S) != 0)
    return absl::InvalidArgumentError("gdn2 decode: head_k_dim must be a multiple of the cluster size");
  if (a.slots == nullptr || a.pool == nullptr)
    return absl::InvalidArgumentError("gdn2 decode: slots and pool are required");
  const void* required[] = {a.q_raw, a.k_raw, a.v_raw, a.b_raw, a.w_raw, a.f_raw, a.z_raw,
                            a.q_conv_w, a.k_conv_w, a.v_conv_w, a.a_log, a.dt_bias,
                            a.z_bias, a.o_norm, a.y};
  for (const void* ptr : required) {
    if (ptr == nullptr) return absl::InvalidArgumentError("gdn2 decode: a required tensor is null");
  }
  const bool fold = a.gate_rank != 0;
  if (fold) {
    if (a.mode != Mode::kFused)
      return absl::InvalidArgumentError("gdn2 decode: gate_rank applies to the fused mode only");
    if (a.gate_rank < 8 || a.gate_rank > 128 || a.gate_rank % 8 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "gdn2 decode: gate_rank ", a.gate_rank, " must be a multiple of 8 in [8, 128]"));
    if (a.f_up == nullptr || a.z_up == nullptr)
      return absl::InvalidArgumentError("gdn2 decode: gate_rank > 0 needs f_up and z_up");
    if (!IsAligned(a.f_up, 16) || !IsAligned(a.z_up, 16))
      return absl::InvalidArgumentError("gdn2 decode: f_up and z_up must be 16-byte aligned");
  }
  // Strides at the boundary: each region must fit inside the slot, and rows must not overlap.
  const int64_t kd = shape.key_dim(), vd = shape.value_dim();
  const int64_t state_bytes = static_cast<int64_t>(HV) * dk * dv * DTypeBytes(a.state_type);
  struct Region { const char* name; int64_t off, bytes, align; };
  const Region regions[] = {
      {"recurrent_offset", a.recurrent_offset, state_bytes, 16},
      {"conv_q_offset", a.conv_q_offset, (W - 1) * kd * 4, 4},
      {"conv_k_offset", a.conv_k_offset, (W - 1) * kd * 4, 4},
      {"conv_v_offset", a.conv_v_offset, (W - 1) * vd * 4, 4}};
  if (a.slot_stride_bytes <= 0 || a.slot_stride_bytes % 16 != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "gdn2 decode: slot_stride_bytes ", a.slot_stride_bytes, " must be a positive multiple of 16"));
  if (!IsAligned(a.pool, 16))
    return absl::InvalidArgumentError("gdn2 decode: pool must be 16-byte aligned");
  for (const Region& r : regions) {
    if (r.off < 0 || r.off % r.align != 0 || r.off + r.bytes > a.slot_stride_bytes)
      return absl::InvalidArgumentError(absl::StrCat(
          "gdn2 decode: ", r.name, " = ", r.off, " (", r.bytes, " bytes) does not fit a ",
          a.slot_stride_bytes, "-byte slot with alignment ", r.align));
  }
  struct Stride { const char* name; int64_t stride, width; };
  const Stride strides[] = {{"q_stride", a.q_stride, kd}, {"k_stride", a.k_stride, kd},
                            {"v_stride", a.v_stride, vd}, {"b_stride", a.b_stride, kd},
                            {"w_stride", a.w_stride, vd},
                            {"f_stride", a.f_stride, fold ? a.gate_rank : kd},
                            {"z_stride", a.z_stride, fold ? a.gate_rank : vd},
                            {"y_stride", a.y_stride, vd}};
  for (const Stride& st : strides) {
    if (a.batch > 1 && st.stride < st.width)
      return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: ", st.name, " = ", st.stride,
                                                     " is smaller than the row width ", st.width));
  }
  if (a.num_slots <= 0) return absl::InvalidArgumentError("gdn2 decode: num_slots must be positive");
  if (streamed && (a.prep == nullptr || a.prep_floats < Gdn2DecodePrepFloats(shape, a.batch)))
    return absl::InvalidArgumentError(absl::StrCat(
        "gdn2 decode: the streamed mode needs prep scratch of ",
        Gdn2DecodePrepFloats(shape, a.batch), " floats, got ", a.prep_floats));
  if (streamed && !IsAligned(a.prep, 16))
    return absl::InvalidArgumentError("gdn2 decode: prep scratch must be 16-byte aligned");

  Params p;
  p.H = H; p.HV = HV; p.dv = dv; p.W = W; p.G = G; p.S = S;
  p.neg_eig = shape.allow_neg_eigval;
  p.gate_sigmoid = shape.gate_sigmoid;
  p.eps = shape.norm_eps;
  p.key_dim = static_cast<int>(kd);
  p.value_dim = static_cast<int>(vd);
  p.slots = a.slots;
  p.pool = static_cast<char*>(a.pool);
  p.num_slots = a.num_slots;
  p.slot_stride = a.slot_stride_bytes;
  p.rec_off = a.recurrent_offset;
  p.cq_off = a.conv_q_offset;
  p.ck_off = a.conv_k_offset;
  p.cv_off = a.conv_v_offset;
  p.q_raw = a.q_raw; p.k_raw = a.k_raw; p.v_raw = a.v_raw; p.b_raw = a.b_raw;
  p.w_raw = a.w_raw; p.raw_bf16 = a.raw_type == DType::kBF16;
  p.f_raw = a.f_raw; p.z_raw = a.z_raw;
  p.q_st = a.q_stride; p.k_st = a.k_stride; p.v_st = a.v_stride; p.b_st = a.b_stride;
  p.w_st = a.w_stride; p.f_st = a.f_stride; p.z_st = a.z_stride;
  p.q_cw = a.q_conv_w; p.k_cw = a.k_conv_w; p.v_cw = a.v_conv_w;
  p.a_log = a.a_log; p.dt_bias = a.dt_bias; p.z_bias = a.z_bias; p.o_norm = a.o_norm;
  p.y = a.y;
  p.y_st = a.y_stride;
  p.y_bf16 = a.y_type == DType::kBF16;
  p.prep = streamed ? a.prep : nullptr;
  p.prep_row = PrepRowFloats(H, dk, static_cast<int>(vd));
  p.state_evict_last = streamed && Gdn2DecodeStateEvictLast(shape, a.batch, a.state_type);
  p.ramp_blocks = p.ramp_ns = 0;  // LaunchStreamed sets them
  p.overlap = a.overlap_launch;
  p.state_ready = a.state_ready;
  p.gate_rank = a.gate_rank;
  p.f_up = static_cast<const uint16_t*>(a.f_up);
  p.z_up = static_cast<const uint16_t*>(a.z_up);

  if (!streamed) return gdn2_detail::LaunchFused(p, dk, dv / S, a.state_type, a.batch, stream);
  return DispatchTileShape(dk, dv, "gdn2 decode (streamed): ", [&]<int DK, int DV>() {
    return a.state_type == DType::kF32 ? LaunchStreamed<float, DK, DV>(p, a.batch, stream)
                                       : LaunchStreamed<__nv_bfloat16, DK, DV>(p, a.batch, stream);
  });
}

}  // namespace deltaserve::cuda
