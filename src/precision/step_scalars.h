#pragma once
// The optimizer step's scalars: the gradient norm, the clipping coefficient
// and the inverse loss scale the fused kernels multiply gradients by, derived
// from the global squared norm on the device it was reduced on.
//
// Note [The step's scalars stay on the device]
// DeepSpeed's step reads the overflow flag and the norm on the host, then
// computes clip = max(1, (norm / scale + 1e-6) / max_norm) and hands the
// kernels 1 / (scale * clip). Each read is a host-device synchronisation
// that stalls the host until the GPU has caught up with backward. Here the
// same arithmetic runs as fp64 tensor ops on the norm's device, so the
// kernels' StepControl (inverse scale and overflow flag) comes from the
// device and the host reads nothing:
//   norm     = isfinite(norm_sq) ? sqrt(norm_sq) / scale : -1   (DeepSpeed's -1)
//   clip     = max_norm > 0 ? max(1, (norm + 1e-6) / max_norm) : 1
//   inv      = float(1 / (scale * clip))
//   overflow = skip_on_overflow && !isfinite(norm_sq)
// The ops are the host formula's, in fp64, so the results agree with it to
// within one ulp (ATen's vectorised CPU sqrt is not always correctly rounded;
// StepScalars.* tests). The norm is
// a DeviceScalar, read when someone asks (Engine::global_grad_norm(), the
// report line, the monitors) through pinned memory behind an event. Whether
// the step overflowed (fp16, or bf16 with check_grad_overflow) is that same
// norm (-1); the host reads it one step late where it can (Note [The overflow
// decision is read a step late], engine/progress.cpp), at once only for a
// dynamic fp16 scale. EngineCuda.StepMakesNoHostSync counts a step's
// synchronising CUDA calls on a GPU.

#include "optim/fused_optimizer.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>

namespace zerotrain::precision {

/// A scalar the device computes; the host copies it once, on the first
/// read(). Copies share that read, so the engine and its reporter can both
/// hold one without a second transfer.
class DeviceScalar {
 public:
  DeviceScalar() = default;
  /// `value`: one element, any floating dtype, on any device.
  explicit DeviceScalar(at::Tensor value);

  bool defined() const noexcept { return state_ != nullptr; }
  /// The value on the host. On a GPU the value was copied into pinned memory
  /// behind an event when the scalar was made: the first read waits for that
  /// event (the work that computed it), not for everything queued since.
  double read() const;
  /// The value without a host transfer, or nullopt before the first read().
  std::optional<double> if_read() const;
  const at::Tensor& tensor() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

struct StepScalars {
  DeviceScalar grad_norm;      // ||g|| / loss scale; -1 when g has an inf or nan
  optim::StepControl control;  // inverse scale with clipping, and the overflow flag
};

/// Note [The step's scalars stay on the device]. `norm_sq`: the global
/// squared norm of the still-scaled gradients, one fp64 element. `max_norm`
/// <= 0 turns clipping off. `skip_on_overflow` sets the control's flag when
/// the norm is not finite (the kernels then update nothing).
StepScalars step_scalars(const at::Tensor& norm_sq, double loss_scale, double max_norm, bool skip_on_overflow);

}  // namespace zerotrain::precision
