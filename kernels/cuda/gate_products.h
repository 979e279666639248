// The two low-rank gate up-projections of a GDN-2 decode step in one launch (MODEL_SPEC.md
// section 2, steps 4 and 7: F1 of the log-decay and G1 of the output gate):
//
//   f[m, :] = bf16(f0[m, :]) . f_up^T      f_up bf16 [nf, rank], row-major
//   z[m, :] = bf16(g0[m, :]) . z_up^T      z_up bf16 [nz, rank], row-major
//
// with fp32 sums (bf16 tensor-core products), the same values a bf16 cast of f0 / g0 followed by
// bf16 matrix products with fp32 accumulation gives, up to summation order.
//
//   f0, g0   in_type (f32 or bf16) [rows, rank], rows ld_in elements apart (ld_in % 4 == 0;
//            16-byte aligned for f32, 8-byte for bf16)
//   f, z     f32 [rows, nf] / [rows, nz], rows ld_f / ld_z apart
//   rank     a multiple of 16 in [16, 128]; nf, nz multiples of 64
//
// With `programmatic` the launch is a programmatic dependent of the kernel before it on the
// stream: each block stages its weight tile before it waits for that kernel (the weights must
// not be written by it), and triggers its own dependents at once, so that a dependent launch
// (the GDN-2 decode) can become resident and start its own predecessor-independent loads while
// this one runs. A dependent must then order its reads of f / z after this grid completes
// (cudaGridDependencySynchronize, or a chain of it and release / acquire).
//
// Thread-safety: stateless; the launch is ordered on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

struct GateProductsArgs {
  int rows = 0;
  int rank = 0;
  const void* f0 = nullptr;
  const void* g0 = nullptr;
  int64_t ld_in = 0;
  DType in_type = DType::kF32;
  const void* f_up = nullptr;  // bf16
  int64_t nf = 0;
  const void* z_up = nullptr;  // bf16
  int64_t nz = 0;
  float* f = nullptr;
  int64_t ld_f = 0;
  float* z = nullptr;
  int64_t ld_z = 0;
  bool programmatic = false;
};

absl::Status LaunchGateProducts(const GateProductsArgs& args, cudaStream_t stream);

}  // namespace deltaserve::cuda
