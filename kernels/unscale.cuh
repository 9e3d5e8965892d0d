#pragma once
// In-place unscaling of a list of gradients of one dtype, x *= inv_scale,
// with inf/nan detection that sets a device overflow flag: what PyTorch's
// _amp_foreach_non_finite_check_and_unscale_ does, without a host read.

#include "kernels/optim_math.h"

#include <cuda_runtime_api.h>

#include <stdint.h>

namespace zerotrain::kernels {

struct UnscaleLaunch {
  int num_tensors;
  void* const* tensors;
  DType dtype;
  const int64_t* numels;
  const float* inv_scale;  // device, one float
  int32_t* overflow;       // device, one int: set to 1 when an element is inf or nan
};

void unscale(const UnscaleLaunch& launch, cudaStream_t stream);

}  // namespace zerotrain::kernels
