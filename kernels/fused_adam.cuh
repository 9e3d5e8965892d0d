#pragma once
// Fused multi-tensor Adam/AdamW: one pass reads the gradient (fp32, bf16 or
// fp16), unscales it, updates the fp32 master weights and moments, and writes
// an optional parameter copy (fp32, bf16 or fp16). Does nothing when the
// device overflow flag is set. See Note [One update function per algorithm].

#include "kernels/optim_math.h"

#include <cuda_runtime_api.h>

#include <stdint.h>

namespace zerotrain::kernels {

/// Host arrays of num_tensors device pointers; element t of every list belongs
/// to tensor t, which has numels[t] elements.
struct AdamLaunch {
  int num_tensors;
  float* const* params;
  float* const* exp_avg;
  float* const* exp_avg_sq;
  const void* const* grads;
  DType grad_dtype;
  void* const* param_copies;  // null: no copy
  DType copy_dtype;
  const int64_t* numels;
  const float* inv_scale;   // device, one float: gradients are multiplied by it
  const int32_t* overflow;  // device, one int: nonzero skips the update
  AdamScalars scalars;
};

void fused_adam(const AdamLaunch& launch, cudaStream_t stream);

}  // namespace zerotrain::kernels
