#pragma once
// The fused optimizer on lists of at::Tensor: checks the lists and dispatches
// to the CUDA kernels (kernels/, through fused_cuda.cpp) or the CPU kernels
// (src/optim/cpu/) by the tensors' device. The engine's step calls these.
//
// Note [Loss scaling stays on the device]
// Every update takes a StepControl: the inverse loss scale (times the
// clipping coefficient) and an overflow flag, both one-element tensors on the
// parameters' device. The kernels multiply each gradient by inv_scale in the
// same pass as the update and do nothing when the flag is set, so a skipped
// step needs no host read and no branch on the host. Whether the flag is set
// is decided before the update by a pass over the gradients
// (multi_tensor_sum_squares or unscale_): a step must be all or nothing, so
// the check cannot live in the update pass itself. On the CPU the flag and
// the scale are read directly from memory.

#include "optim/reference_step.h"

#include "kernels/optim_math.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <vector>

namespace zerotrain::optim {

struct StepControl {
  at::Tensor inv_scale;  // float32, one element: gradients are multiplied by it
  at::Tensor overflow;   // int32, one element: nonzero makes every update a no-op

  /// A control on `device` with the given inverse scale and the flag cleared.
  static StepControl make(const c10::Device& device, double inv_scale);
};

kernels::AdamScalars adam_scalars(const StepHyperParams& h, int64_t step);
kernels::LambScalars lamb_scalars(const StepHyperParams& h);
/// lr * sqrt(1 - b2^t) / (1 - b1^t), or lr without bias correction.
float lamb_step_size(const StepHyperParams& h, int64_t step);

/// Element i of each list belongs together. params, exp_avg and exp_avg_sq are
/// contiguous fp32; grads fp32, bf16 or fp16 (one dtype for the list), with the
/// same number of elements; param_copies empty or one per tensor (one dtype).
struct AdamTensors {
  std::vector<at::Tensor> params;
  std::vector<at::Tensor> grads;
  std::vector<at::Tensor> exp_avg;
  std::vector<at::Tensor> exp_avg_sq;
  std::vector<at::Tensor> param_copies;
};

/// One fused Adam/AdamW step (`step` counts from 1) on every tensor.
void fused_adam(const AdamTensors& t, const StepHyperParams& h, int64_t step, const StepControl& c);

struct LambTensors {
  std::vector<at::Tensor> params;
  std::vector<at::Tensor> grads;
  std::vector<at::Tensor> exp_avg;
  std::vector<at::Tensor> exp_avg_sq;
  std::vector<at::Tensor> updates;  // fp32 scratch, like params
  std::vector<at::Tensor> param_copies;
};

/// LAMB stage 1: m, v and the update u of every tensor. Returns an [n, 2]
/// fp64 tensor on the device: ||p||^2 and ||u||^2 of each tensor.
at::Tensor fused_lamb_prepare(const LambTensors& t, const StepHyperParams& h, const StepControl& c);

/// LAMB stage 2, with `norms` [n, 2] fp64 holding the whole parameter's
/// squared norms for each tensor (summed over shards by the caller).
void fused_lamb_apply(const LambTensors& t, const at::Tensor& norms, const StepHyperParams& h,
                      int64_t step, const StepControl& c);

/// Per-tensor sums of squares in fp64, [n] on the tensors' device; sets
/// `overflow` (when defined) if any element is inf or nan. One dtype per list.
at::Tensor multi_tensor_sum_squares(const std::vector<at::Tensor>& xs,
                                    const at::Tensor& overflow = at::Tensor());

/// In place x *= inv_scale, setting c.overflow when any element is inf or nan.
void unscale_(const std::vector<at::Tensor>& xs, const StepControl& c);

/// The kernels' dtype code of a tensor; an error naming `what` for other dtypes.
kernels::DType kernel_dtype(const at::Tensor& t, const char* what);

}  // namespace zerotrain::optim
