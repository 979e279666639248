// Benchmark of the GDN-2 decode kernels alone: one layer, H = HV = 16, dk = dv = 128,
// W = 4, fp32 and bf16 state, batch 1..1024, both arrangements (Gdn2DecodeArgs::Mode, plain and
// as programmatic dependent launches) and, for the fused one, every split count. (The retired
// arrangements' measurements are in bench/results/gdn2_decode_kernel_v*_h200.json.)
// Reports per-launch time (CUDA graph replays, median), the bytes a launch must move
// (Gdn2DecodeBytes), achieved bandwidth and its ratio to the device-to-device copy bandwidth
// measured in the same run (a 1 GiB copy timed at the start and at the end; the faster of the
// two). Slots rotate over enough disjoint sets that the state cannot sit in
// L2. A "_pdl" mode launches each kernel as a programmatic dependent of the previous launch
// (which touches other slots: overlap_launch + state_ready), as the runner launches the fused
// kernel after the z product; the runner launches the streamed pair plainly ("streamed"), since
// overlapped it made the model's step slower (bench/NOTES.md, "z read after the tile wait").
// Three peers are timed at every fp32 batch: "peer_tile_roundtrip" moves exactly the launch's
// state tiles with the recurrence's grid and copy pattern and does nothing else;
// "peer_state_copy" copies the same tiles in place with a copy kernel's shape and no order
// between different pieces (both in state_roundtrip_peer.h); "peer_copy" is a device-to-device
// copy of the launch's bytes between two contiguous buffers (cudaMemcpyAsync, timed as copies
// queued on a stream). Their ratios show how close the access pattern, and moving these slots'
// state at all, get to the 1 GiB copy at that size.
//
// Where a launch's slots lie (`--placement`; default scattered and compact): "scattered" takes
// every set from one shuffle of the whole pool (the rows of earlier reports); "compact" gives
// each launch a run of consecutive slots, rows in slot order, as the engine's segment-major pool
// with lowest-first slots holds a full batch; "compact_shuffled" the same runs with their rows
// in random order.
//
// Usage: gdn2_decode_bench [out.json] [--modes=a,b] [--batches=1,64] [--states=f32,bf16]
//                          [--splits=1,2] [--placement=scattered,compact,compact_shuffled]
//                          (filters; default: everything, placements scattered and compact)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/state_roundtrip_peer.h"
#include "kernels/cuda/gdn2_decode.h"

using namespace deltaserve::bench;
using deltaserve::cuda::DType;
using deltaserve::cuda::Gdn2DecodeArgs;
using deltaserve::cuda::Gdn2DecodeShape;

namespace {

struct Row {
  std::string placement;
  std::string mode;
  std::string state;
  int batch, splits;
  bool auto_pick;
  double graph_us, single_us, bytes, gbps, ratio;
};

float* RandomDevice(size_t n, std::mt19937& rng, float scale) {
  std::vector<float> h(n);
  std::normal_distribution<float> nd(0.0f, scale);
  for (auto& x : h) x = nd(rng);
  float* d = nullptr;
  BENCH_CUDA(cudaMalloc(&d, n * sizeof(float)));
  BENCH_CUDA(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

struct ModeSpec {
  const char* name;
  Gdn2DecodeArgs::Mode mode;
  bool overlap;
  bool whole_tile;  // splits = 1 only
};

constexpr ModeSpec kModes[] = {
    {"fused", Gdn2DecodeArgs::Mode::kFused, false, false},
    {"fused_pdl", Gdn2DecodeArgs::Mode::kFused, true, false},
    {"streamed", Gdn2DecodeArgs::Mode::kStreamed, false, true},
    {"streamed_pdl", Gdn2DecodeArgs::Mode::kStreamed, true, true},
};

constexpr const char* kPeerRoundTrip = "peer_tile_roundtrip";
constexpr const char* kPeerCopy = "peer_copy";
constexpr const char* kPeerStateCopy = "peer_state_copy";

constexpr const char* kPlacements[] = {"scattered", "compact", "compact_shuffled"};

// Slot indices for `sets` launches of `batch` rows under `placement` (see the header), followed
// by the first `batch` again so that every set offset (k * batch) % num_slots reads `batch`.
std::vector<int32_t> SlotSets(const std::string& placement, int num_slots, int batch) {
  std::vector<int32_t> perm(num_slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 rng(4321);  // the same sets for every mode of a batch
  if (placement == "scattered") {
    std::shuffle(perm.begin(), perm.end(), rng);
  } else if (placement == "compact_shuffled") {
    for (int s = 0; s + batch <= num_slots; s += batch)
      std::shuffle(perm.begin() + s, perm.begin() + s + batch, rng);
  }
  perm.insert(perm.end(), perm.begin(), perm.begin() + batch);
  return perm;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "gdn2_decode_bench.json";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) != 0) out_path = argv[i];
  }
  const std::vector<std::string> f_modes = ListFlag(argc, argv, "--modes");
  const std::vector<std::string> f_batches = ListFlag(argc, argv, "--batches");
  const std::vector<std::string> f_states = ListFlag(argc, argv, "--states");
  const std::vector<std::string> f_splits = ListFlag(argc, argv, "--splits");
  std::vector<std::string> placements = ListFlag(argc, argv, "--placement");
  if (placements.empty()) placements = {"scattered", "compact"};
  for (const std::string& p : placements) {
    if (std::find(std::begin(kPlacements), std::end(kPlacements), p) == std::end(kPlacements)) {
      std::fprintf(stderr, "unknown placement %s\n", p.c_str());
      return 1;
    }
  }
  for (const std::string& m : f_modes) {
    bool known = false;
    for (const ModeSpec& ms : kModes) known = known || m == ms.name;
    known = known || m == kPeerRoundTrip || m == kPeerCopy || m == kPeerStateCopy;
    if (!known) {
      std::fprintf(stderr, "unknown mode %s\n", m.c_str());
      return 1;
    }
  }
  const DeviceInfo dev = GetDeviceInfo();
  std::printf("device: %s, %d SMs, L2 %.0f MB\n", dev.name.c_str(), dev.sms, dev.l2_bytes / 1e6);
  const double copy_bw0 = CopyBandwidth(size_t{1} << 30);
  std::printf("device-to-device copy: %.3f TB/s (read + write)\n", copy_bw0 / 1e12);

  Gdn2DecodeShape shape;  // reference 1.3B head geometry
  const int kd = shape.key_dim(), vd = shape.value_dim(), W = shape.conv_size;
  const int max_batch = 1024;
  const int num_slots = 2304;
  std::mt19937 rng(1234);

  // Inputs (shared by all launches; written by the projection GEMM in a real step).
  const int64_t in_cols = 4 * kd + 3 * vd;
  float* inputs = RandomDevice(static_cast<size_t>(max_batch) * in_cols, rng, 1.0f);
  float* q_cw = RandomDevice(static_cast<size_t>(kd) * W, rng, 0.3f);
  float* k_cw = RandomDevice(static_cast<size_t>(kd) * W, rng, 0.3f);
  float* v_cw = RandomDevice(static_cast<size_t>(vd) * W, rng, 0.3f);
  float* a_log = RandomDevice(shape.num_heads, rng, 0.3f);
  float* dt_bias = RandomDevice(kd, rng, 0.3f);
  float* z_bias = RandomDevice(vd, rng, 0.1f);
  float* o_norm = RandomDevice(shape.head_v_dim, rng, 1.0f);
  void* y = nullptr;
  BENCH_CUDA(cudaMalloc(&y, static_cast<size_t>(max_batch) * vd * 2));
  float* prep = nullptr;
  BENCH_CUDA(cudaMalloc(&prep, deltaserve::cuda::Gdn2DecodePrepFloats(shape, max_batch) * 4));
  BENCH_CUDA(cudaMemset(prep, 0, deltaserve::cuda::Gdn2DecodePrepFloats(shape, max_batch) * 4));
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // The copy peer's source and destination: two copies of the largest launch's bytes, and
  // >= 256 MB of rotation at every batch.
  const size_t copy_buf_bytes =
      static_cast<size_t>(deltaserve::cuda::Gdn2DecodeBytes(shape, max_batch, DType::kF32,
                                                            DType::kBF16)) + (size_t{256} << 20);
  char *copy_src = nullptr, *copy_dst = nullptr;
  if (Selected(f_modes, kPeerCopy) && Selected(f_states, "f32")) {
    BENCH_CUDA(cudaMalloc(&copy_src, copy_buf_bytes));
    BENCH_CUDA(cudaMalloc(&copy_dst, copy_buf_bytes));
    BENCH_CUDA(cudaMemset(copy_src, 1, copy_buf_bytes));
    BENCH_CUDA(cudaMemset(copy_dst, 2, copy_buf_bytes));
  }

  std::vector<Row> rows;
  for (DType st : {DType::kF32, DType::kBF16}) {
    if (!Selected(f_states, deltaserve::cuda::DTypeName(st))) continue;
    // Slot layout: state, then the three conv histories, 256-byte aligned.
    auto up = [](int64_t n) { return (n + 255) / 256 * 256; };
    const int64_t rec = 0;
    const int64_t cq = up(int64_t{shape.num_v_heads} * 128 * 128 * deltaserve::cuda::DTypeBytes(st));
    const int64_t ck = up(cq + int64_t{W - 1} * kd * 4);
    const int64_t cv = up(ck + int64_t{W - 1} * kd * 4);
    const int64_t stride = up(cv + int64_t{W - 1} * vd * 4);
    void* pool = nullptr;
    BENCH_CUDA(cudaMalloc(&pool, static_cast<size_t>(num_slots) * stride));
    {
      // Random state (small values), random histories: never time on zeros.
      std::vector<float> h(static_cast<size_t>(stride) / 4);
      std::normal_distribution<float> nd(0.0f, 0.05f);
      for (auto& x : h) x = nd(rng);
      for (int s = 0; s < num_slots; ++s)
        BENCH_CUDA(cudaMemcpy(static_cast<char*>(pool) + static_cast<size_t>(s) * stride,
                              h.data(), stride, cudaMemcpyHostToDevice));
    }
    int32_t* d_perm = nullptr;
    BENCH_CUDA(cudaMalloc(&d_perm, (num_slots + max_batch) * sizeof(int32_t)));

    for (const std::string& placement : placements)
    for (int batch : {1, 8, 32, 64, 128, 256, 512, 1024}) {
      if (!Selected(f_batches, std::to_string(batch))) continue;
      const std::vector<int32_t> perm = SlotSets(placement, num_slots, batch);
      BENCH_CUDA(cudaMemcpy(d_perm, perm.data(), perm.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice));
      // Rotate over sets of distinct slots: >= 256 MB of state touched per rotation.
      const int64_t per_launch = int64_t{batch} * stride;
      const int sets = static_cast<int>(std::max<int64_t>(
          2, std::min<int64_t>(num_slots / batch, (int64_t{256} << 20) / per_launch + 1)));
      const int launches = std::max(sets, 20);
      for (const ModeSpec& ms : kModes)
      for (int splits : {1, 2, 4, 8}) {
        if (!Selected(f_modes, ms.name) || !Selected(f_splits, std::to_string(splits))) continue;
        if (ms.whole_tile && splits > 1) continue;
        Gdn2DecodeArgs a;
        a.mode = ms.mode;
        a.overlap_launch = a.state_ready = ms.overlap;
        a.prep = prep;
        a.prep_floats = deltaserve::cuda::Gdn2DecodePrepFloats(shape, max_batch);
        a.batch = batch;
        a.pool = pool;
        a.num_slots = num_slots;
        a.slot_stride_bytes = stride;
        a.recurrent_offset = rec;
        a.conv_q_offset = cq;
        a.conv_k_offset = ck;
        a.conv_v_offset = cv;
        a.state_type = st;
        a.q_raw = inputs;
        a.k_raw = inputs + kd;
        a.v_raw = inputs + 2 * kd;
        a.b_raw = inputs + 2 * kd + vd;
        a.w_raw = inputs + 3 * kd + vd;
        a.f_raw = inputs + 3 * kd + 2 * vd;
        a.z_raw = inputs + 4 * kd + 2 * vd;
        a.q_stride = a.k_stride = a.v_stride = a.b_stride = a.w_stride = a.f_stride =
            a.z_stride = in_cols;
        a.q_conv_w = q_cw; a.k_conv_w = k_cw; a.v_conv_w = v_cw;
        a.a_log = a_log; a.dt_bias = dt_bias; a.z_bias = z_bias; a.o_norm = o_norm;
        a.y = y;
        a.y_stride = vd;
        a.y_type = DType::kBF16;
        a.splits = splits;
        bool ok = true;
        int launch_i = 0;
        auto body_n = [&](int n) {
          for (int i = 0; i < n; ++i) {
            a.slots = d_perm + (static_cast<int64_t>(launch_i++ % sets) * batch) % num_slots;
            absl::Status s = deltaserve::cuda::LaunchGdn2Decode(shape, a, stream);
            if (!s.ok()) {
              std::fprintf(stderr, "launch failed: %s\n", std::string(s.message()).c_str());
              ok = false;
              return;
            }
          }
        };
        body_n(3);
        BENCH_CUDA(cudaStreamSynchronize(stream));
        if (!ok) std::exit(3);
        const double t_graph = TimeGraph(stream, [&] { body_n(launches); }, launches);
        const double t_single = TimeSingle(stream, [&] { body_n(1); });
        BENCH_CUDA(cudaGetLastError());
        const double bytes = static_cast<double>(
            deltaserve::cuda::Gdn2DecodeBytes(shape, batch, st, DType::kBF16));
        rows.push_back({placement, ms.name, deltaserve::cuda::DTypeName(st), batch, splits,
                        !ms.whole_tile && splits == 1,  // splits = 0 picks 1
                        t_graph * 1e6, t_single * 1e6, bytes, bytes / t_graph / 1e9,
                        0.0});
      }
      if (st != DType::kF32) continue;
      // The peers, rotated over the same slot sets (round trip) or as many distinct ranges.
      const double state_bytes = 2.0 * batch * shape.num_v_heads * 128 * 128 * 4;
      // The two in-place peers share the slot rotation.
      auto time_state_peer = [&](const char* name, auto launch) {
        if (!Selected(f_modes, name)) return;
        int launch_i = 0;
        auto body_n = [&](int n) {
          for (int i = 0; i < n; ++i)
            BENCH_CUDA(launch(d_perm + (static_cast<int64_t>(launch_i++ % sets) * batch) %
                                           num_slots));
        };
        body_n(3);
        BENCH_CUDA(cudaStreamSynchronize(stream));
        const double t_graph = TimeGraph(stream, [&] { body_n(launches); }, launches);
        const double t_single = TimeSingle(stream, [&] { body_n(1); });
        rows.push_back({placement, name, "f32", batch, 1, false, t_graph * 1e6, t_single * 1e6,
                        state_bytes, state_bytes / t_graph / 1e9, 0.0});
      };
      const bool evict_last = deltaserve::cuda::Gdn2DecodeStateEvictLast(shape, batch,
                                                                         DType::kF32);
      time_state_peer(kPeerRoundTrip, [&](const int32_t* slots) {
        return deltaserve::bench::LaunchStateRoundTripPeer(slots, batch, shape.num_v_heads, pool,
                                                           stride, rec, num_slots, evict_last,
                                                           stream);
      });
      time_state_peer(kPeerStateCopy, [&](const int32_t* slots) {
        return deltaserve::bench::LaunchStateInPlaceCopyPeer(slots, batch, shape.num_v_heads,
                                                             pool, stride, rec, num_slots,
                                                             stream);
      });
      if (copy_src != nullptr) {
        const double bytes = static_cast<double>(
            deltaserve::cuda::Gdn2DecodeBytes(shape, batch, st, DType::kBF16));
        const size_t half = (static_cast<size_t>(bytes / 2) + 255) / 256 * 256;
        const int copy_sets = static_cast<int>(std::max<size_t>(2, copy_buf_bytes / half));
        int launch_i = 0;
        auto body_n = [&](int n) {
          for (int i = 0; i < n; ++i) {
            const size_t off = static_cast<size_t>(launch_i++ % copy_sets) * half;
            BENCH_CUDA(cudaMemcpyAsync(copy_dst + off, copy_src + off, half,
                                       cudaMemcpyDeviceToDevice, stream));
          }
        };
        body_n(3);
        BENCH_CUDA(cudaStreamSynchronize(stream));
        // N copies queued on the stream between events, not a graph: as graph nodes, copies of
        // >= 512 MB ran at ~2.75 TB/s on an H200 (bench/NOTES.md, "peers").
        const double t_graph = TimeSingle(stream, [&] { body_n(launches); }, 7) / launches;
        const double t_single = TimeSingle(stream, [&] { body_n(1); });
        rows.push_back({placement, kPeerCopy, "f32", batch, 1, false, t_graph * 1e6, t_single * 1e6,
                        2.0 * half, 2.0 * half / t_graph / 1e9, 0.0});
      }
    }
    cudaFree(d_perm);
    cudaFree(pool);
  }
  cudaFree(copy_src);
  cudaFree(copy_dst);
  const double copy_bw1 = CopyBandwidth(size_t{1} << 30);
  // Ratios refer to the faster of the two copies, so a slow sample never inflates one.
  const double copy_ref = std::max(copy_bw0, copy_bw1);
  for (Row& r : rows) r.ratio = r.bytes / (r.graph_us * 1e-6) / copy_ref;

  FILE* f = OpenJsonReport(out_path, "gdn2_decode_kernel", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"sms\": %d, \"l2_bytes\": %lld,\n", dev.sms,
               static_cast<long long>(dev.l2_bytes));
  std::fprintf(f, "  \"shape\": {\"H\": 16, \"HV\": 16, \"dk\": 128, \"dv\": 128, \"W\": 4, \"layers\": 1},\n");
  std::fprintf(f, "  \"copy_bw_bytes_per_s\": [%.6e, %.6e],\n", copy_bw0, copy_bw1);
  std::fprintf(f, "  \"timing\": \"CUDA graph of N launches rotating over disjoint slot sets, median of 15 replays / N; single = one stream launch between events\",\n");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"placement\": \"%s\", \"mode\": \"%s\", \"state\": \"%s\", "
                 "\"batch\": %d, \"splits\": %d, \"auto\": %s, "
                 "\"us_per_launch\": %.3f, \"us_single_launch\": %.3f, \"bytes\": %.0f, "
                 "\"gb_per_s\": %.1f, \"ratio_to_copy\": %.4f}%s\n",
                 r.placement.c_str(), r.mode.c_str(), r.state.c_str(), r.batch, r.splits,
                 r.auto_pick ? "true" : "false", r.graph_us,
                 r.single_us, r.bytes, r.gbps, r.ratio, i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);

  std::printf("copy bandwidth: %.3f TB/s at start, %.3f TB/s at end (ratios to the faster)\n",
              copy_bw0 / 1e12, copy_bw1 / 1e12);
  std::printf("%-16s %-17s %-5s %6s %6s %10s %10s %9s %7s\n", "placement", "mode", "state",
              "batch", "splits", "us/launch", "us single", "GB/s", "ratio");
  for (const Row& r : rows) {
    std::printf("%-16s %-17s %-5s %6d %5d%s %10.2f %10.2f %9.0f %7.3f\n", r.placement.c_str(),
                r.mode.c_str(), r.state.c_str(), r.batch, r.splits,
                r.auto_pick ? "*" : " ", r.graph_us, r.single_us, r.gbps, r.ratio);
  }
  std::printf("(* = the launcher's automatic split choice)\n");
  return 0;
}
