#pragma once
// Deterministic sums inside a thread block: a fixed shuffle tree per warp,
// then warp 0 over the per-warp results. The same inputs give the same bits.

#include <cuda_runtime.h>

namespace zerotrain::kernels {

/// The block's sum of `x`, valid in thread 0. `scratch` holds 32 doubles in
/// shared memory; blockDim.x must be a multiple of 32.
__device__ __forceinline__ double block_sum(double x, double* scratch) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = threadIdx.x < (blockDim.x >> 5) ? scratch[lane] : 0.0;
  if (warp == 0) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
  }
  __syncthreads();  // scratch may be reused right after
  return x;
}

}  // namespace zerotrain::kernels
