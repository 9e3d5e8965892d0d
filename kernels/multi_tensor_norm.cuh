#pragma once
// Per-tensor squared L2 norms in fp64 over a list of tensors of one dtype,
// reproducible run to run (per-chunk partials summed in a fixed order). A
// non-finite element sets the device overflow flag (when given) and makes
// that tensor's sum inf or nan.

#include "kernels/optim_math.h"

#include <cuda_runtime_api.h>

#include <stdint.h>

namespace zerotrain::kernels {

struct SumSquaresLaunch {
  int num_tensors;
  const void* const* tensors;
  DType dtype;
  const int64_t* numels;
  const int64_t* chunk_offsets_host;    // num_tensors + 1: prefix sums of num_chunks(numels)
  const int64_t* chunk_offsets_device;  // the same, in device memory
  double* chunk_partials;               // device, chunk_offsets_host[num_tensors] doubles
  double* out;                          // device, num_tensors
  int32_t* overflow;                    // device or null: set to 1 on a non-finite element
};

void multi_tensor_sum_squares(const SumSquaresLaunch& launch, cudaStream_t stream);

}  // namespace zerotrain::kernels
