// See Note [The step's scalars stay on the device] in step_scalars.h.

#include "precision/step_scalars.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/reciprocal.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/Event.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>

namespace zerotrain::precision {

struct DeviceScalar::State {
  at::Tensor value;
  at::Tensor pinned;                // CUDA: the value's copy in page-locked host memory
  std::optional<c10::Event> ready;  // recorded after that copy
  std::optional<double> host;
};

DeviceScalar::DeviceScalar(at::Tensor value) : state_(std::make_shared<State>()) {
  TORCH_INTERNAL_ASSERT(value.defined() && value.numel() == 1 && at::isFloatingType(value.scalar_type()));
  if (value.is_cuda()) {
    // The copy is queued now, behind the work that computes the value; a read
    // waits for this event only, never for work queued after it.
    state_->pinned = at::empty({1}, value.options().device(at::kCPU).pinned_memory(true));
    state_->pinned.copy_(value.reshape({1}), /*non_blocking=*/true);
    state_->ready.emplace(value.device().type());
    state_->ready->record(c10::impl::getDeviceGuardImpl(value.device().type())->getStream(value.device()));
  }
  state_->value = std::move(value);
}

double DeviceScalar::read() const {
  TORCH_INTERNAL_ASSERT(state_ != nullptr, "DeviceScalar::read() on an empty scalar");
  if (!state_->host) {
    if (state_->ready) {
      state_->ready->synchronize();
      state_->host = state_->pinned.item<double>();
    } else {
      state_->host = state_->value.item<double>();
    }
  }
  return *state_->host;
}

std::optional<double> DeviceScalar::if_read() const { return state_ ? state_->host : std::nullopt; }

const at::Tensor& DeviceScalar::tensor() const {
  TORCH_INTERNAL_ASSERT(state_ != nullptr);
  return state_->value;
}

StepScalars step_scalars(const at::Tensor& norm_sq, double loss_scale, double max_norm, bool skip_on_overflow) {
  TORCH_INTERNAL_ASSERT(norm_sq.numel() == 1 && norm_sq.scalar_type() == at::kDouble,
                        "step_scalars takes the fp64 squared norm");
  TORCH_INTERNAL_ASSERT(loss_scale > 0);
  c10::NoGradGuard no_grad;
  const at::Tensor sq = norm_sq.reshape({1});
  const at::Tensor finite = at::isfinite(sq);
  // Note [The step's scalars stay on the device]: DeepSpeed's host formula, op by op.
  const at::Tensor norm = at::where(finite, at::sqrt(sq) / loss_scale, at::full_like(sq, -1.0));
  at::Tensor scale_times_clip = at::full_like(sq, loss_scale);
  if (max_norm > 0) scale_times_clip = scale_times_clip * at::clamp_min((norm + 1e-6) / max_norm, 1.0);
  StepScalars out;
  out.grad_norm = DeviceScalar(norm);
  out.control.inv_scale = at::reciprocal(scale_times_clip).to(at::kFloat);
  out.control.overflow = skip_on_overflow ? at::logical_not(finite).to(at::kInt)
                                          : at::zeros({1}, sq.options().dtype(at::kInt));
  return out;
}

}  // namespace zerotrain::precision
