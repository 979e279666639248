// Asynchronous copies global -> shared for the kernels of kernels/cuda: cp.async (16 bytes per
// thread, completion by commit groups) and bulk copies (any multiple of 16 bytes per
// instruction, completion counted in bytes on an mbarrier). Include only from CUDA sources.
//
// Thread-safety: a thread's cp.async wait covers only its own copies, so a block barrier must
// follow before other threads read them; an mbarrier wait covers every copy armed on it.
#pragma once

#include <cstdint>

namespace deltaserve::cuda {

__device__ __forceinline__ uint32_t SharedAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes; with valid == false nothing is read from `gmem` (it must still be a mapped address)
// and the 16 bytes are zero-filled. Both addresses 16-byte aligned.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid = true) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddr(smem)),
               "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Initialises the mbarrier at shared address `bar` for one arrival per phase and makes it
// visible to the async proxy. One thread calls it; a block barrier must follow before other
// threads use it.
__device__ __forceinline__ void MbarInit(uint32_t bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Orders this thread's earlier generic-proxy accesses to shared memory before its later bulk
// copies into it (a buffer refilled after it was read or written by threads of the block, which
// a block barrier has ordered before this thread).
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// The one arrival of the current phase of `bar`, which then completes once `bytes` more bytes
// of bulk copies armed on it have landed.
__device__ __forceinline__ void MbarArriveExpectTx(uint32_t bar, int bytes) {
  asm volatile(
      "{\n .reg .b64 st;\n mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar),
      "r"(bytes)
      : "memory");
}

// One bulk copy of `bytes` (a multiple of 16; 16-byte aligned ends) from global `src` into
// shared address `dst`, counted on `bar`.
__device__ __forceinline__ void BulkCopy(uint32_t dst, const void* src, int bytes, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1], %2, [%3];\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}

// An L2 cache policy that keeps the lines it fetches ahead of normal ones (evict_last).
__device__ __forceinline__ uint64_t L2EvictLastPolicy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// BulkCopy whose L2 lines are fetched under `policy` (from L2EvictLastPolicy and the like).
__device__ __forceinline__ void BulkCopyWithPolicy(uint32_t dst, const void* src, int bytes,
                                                   uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1], %2, [%3], %4;\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar), "l"(policy)
      : "memory");
}

// Arms `bar` for one bulk copy and starts it.
__device__ __forceinline__ void BulkLoad(uint32_t dst, const void* src, int bytes, uint32_t bar) {
  MbarArriveExpectTx(bar, bytes);
  BulkCopy(dst, src, bytes, bar);
}

// Spins until the phase of `bar` with this parity (0 for its first phase, then alternating)
// has completed.
__device__ __forceinline__ void MbarWaitParity(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        " selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

}  // namespace deltaserve::cuda
