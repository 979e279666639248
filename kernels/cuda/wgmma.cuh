// Warpgroup tensor-core products (wgmma, sm_90a) for the kernels of kernels/cuda: bf16 operands,
// fp32 accumulators, A from registers, B from shared memory in the 128-byte-swizzled layout.
// Include only from CUDA sources compiled for sm_90a.
//
// Register fragments (per warp w of the warpgroup, g = lane / 4, t = lane % 4): A (64 x 16) is
// the m16n8k16 mma.sync A fragment of rows 16w..16w+15; D (64 x N) holds, for each n8 tile n,
// d[4n], d[4n+1] at (16w + g, 8n + 2t..2t+1) and d[4n+2], d[4n+3] at row 16w + g + 8.
//
// Shared-memory tiles: rows of 128 bytes (64 bf16), in blocks of 8 rows (1 KB, 1 KB aligned)
// whose 16-byte pieces are permuted as piece ^ (row % 8) (Swizzle128). A K-major B (N rows of K)
// of K <= 64 is one such tile: k16 step k starts 32 k bytes into it. An N-major B (K rows of N)
// with N = 128 is two tiles of 64 columns, LBO bytes apart; k16 step k starts 2 KB k into them.
//
// Ordering: shared memory written by ordinary stores or cp.async must be made visible with
// FenceProxyAsync (async_copy.cuh) before a block barrier that precedes the wgmma; WgmmaFence
// precedes the first wgmma whose registers other instructions wrote; results may be read only
// after WgmmaWait and FenceOperands on them.
#pragma once

#include <cstdint>

namespace deltaserve::cuda {

// Byte offset of 16-byte piece `piece` (0..7) of row `row` in a 128-byte-swizzled tile.
__device__ __forceinline__ int Swizzle128(int row, int piece) {
  return row * 128 + ((piece ^ (row & 7)) << 4);
}

// Descriptor of a 128-byte-swizzled operand at shared address `addr` (1 KB aligned tile, plus
// the k step's offset): `lbo` bytes between 64-column tiles (N-major), 8-row blocks 1 KB apart.
__device__ __forceinline__ uint64_t SmemDesc128(uint32_t addr, uint32_t lbo) {
  return static_cast<uint64_t>((addr >> 4) & 0x3fff) |
         static_cast<uint64_t>((lbo >> 4) & 0x3fff) << 16 |
         static_cast<uint64_t>(1024 >> 4) << 32 | uint64_t{1} << 62;
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most N of the warpgroup's committed groups are pending.
template <int N>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving reads or writes of d across the wgmma issue / wait points.
template <int N>
__device__ __forceinline__ void FenceOperands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D (64 x 64, f32) (+)= A (64 x 16, bf16 registers) B (16 x 64, bf16 in shared memory at `desc`).
// kTransB: B stored N-major (else K-major). accumulate == false: D = A B.
template <int kTransB>
__device__ __forceinline__ void WgmmaM64N64K16(float (&d)[32], const uint32_t (&a)[4],
                                               uint64_t desc, bool accumulate) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"
      "%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
      "}, {%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),
        "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate ? 1 : 0),
        "n"(kTransB));
}

// D (64 x 128, f32) (+)= A (64 x 16, bf16 registers) B (16 x 128, bf16 in shared memory).
// kTransB: B stored N-major (else K-major). accumulate == false: D = A B.
template <int kTransB>
__device__ __forceinline__ void WgmmaM64N128K16(float (&d)[64], const uint32_t (&a)[4],
                                                uint64_t desc, bool accumulate) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"
      "%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,"
      "%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,"
      "%62,%63"
      "}, {%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),
        "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),
        "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),
        "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
        "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),
        "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate ? 1 : 0),
        "n"(kTransB));
}

}  // namespace deltaserve::cuda
