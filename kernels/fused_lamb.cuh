#pragma once
// Fused multi-tensor LAMB in DeepSpeed's FusedLamb two stages (see Note [LAMB
// on shards needs whole-parameter norms] in src/optim/reference_step.h):
//   prepare: unscale the gradient, update m and v, write the update u, and
//            produce each tensor's squared norms ||p||^2 and ||u||^2;
//   apply:   p -= lr * sqrt(bc2) / bc1 * trust * u, trust = ||p|| / ||u||
//            clamped to [min_coeff, max_coeff] (1 when a norm is 0), with an
//            optional parameter copy written in the same pass.
// Between the stages the caller may add norms across shards and ranks. Both
// stages do nothing when the device overflow flag is set.

#include "kernels/optim_math.h"

#include <cuda_runtime_api.h>

#include <stdint.h>

namespace zerotrain::kernels {

struct LambPrepareLaunch {
  int num_tensors;
  const float* const* params;
  float* const* exp_avg;
  float* const* exp_avg_sq;
  const void* const* grads;
  DType grad_dtype;
  float* const* updates;
  const int64_t* numels;
  const int64_t* chunk_offsets_host;    // num_tensors + 1: prefix sums of num_chunks(numels)
  const int64_t* chunk_offsets_device;  // the same, in device memory
  double* chunk_partials;               // device, 2 * chunk_offsets_host[num_tensors] doubles
  double* norms;                        // device, 2 * num_tensors: ||p||^2, ||u||^2 per tensor
  const float* inv_scale;
  const int32_t* overflow;
  LambScalars scalars;
};

void fused_lamb_prepare(const LambPrepareLaunch& launch, cudaStream_t stream);

struct LambApplyLaunch {
  int num_tensors;
  float* const* params;
  const float* const* updates;
  void* const* param_copies;  // null: no copy
  DType copy_dtype;
  const int64_t* numels;
  const double* norms;  // device, 2 * num_tensors: whole-parameter ||p||^2, ||u||^2 per tensor
  float step_size;      // lr * sqrt(bc2) / bc1 (lr without bias correction)
  float min_coeff;
  float max_coeff;
  const int32_t* overflow;
};

void fused_lamb_apply(const LambApplyLaunch& launch, cudaStream_t stream);

}  // namespace zerotrain::kernels
