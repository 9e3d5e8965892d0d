#pragma once
// The CUDA side of fused_optimizer.h: raw pointers from the checked lists,
// the current stream, and the kernels/ entry points. Compiled only in the CUDA
// configuration; fused_optimizer.cpp has already checked every list.

#include "optim/fused_optimizer.h"

namespace zerotrain::optim::cuda {

void fused_adam(const AdamTensors& t, const kernels::AdamScalars& s, const StepControl& c);
at::Tensor fused_lamb_prepare(const LambTensors& t, const kernels::LambScalars& s, const StepControl& c);
void fused_lamb_apply(const LambTensors& t, const at::Tensor& norms, float step_size, float min_coeff,
                      float max_coeff, const StepControl& c);
at::Tensor multi_tensor_sum_squares(const std::vector<at::Tensor>& xs, const at::Tensor& overflow);
void unscale_(const std::vector<at::Tensor>& xs, const StepControl& c);

}  // namespace zerotrain::optim::cuda
