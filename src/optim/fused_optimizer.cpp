// See Note [Loss scaling stays on the device] in fused_optimizer.h.

#include "optim/fused_optimizer.h"

#include "optim/cpu/cpu_optim.h"
#if defined(ZEROTRAIN_WITH_CUDA)
#include "optim/fused_cuda.h"
#endif

#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string>

namespace zerotrain::optim {

kernels::DType kernel_dtype(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return kernels::DType::kFloat32;
    case at::kBFloat16: return kernels::DType::kBFloat16;
    case at::kHalf: return kernels::DType::kFloat16;
    default: break;
  }
  TORCH_CHECK(false, "zerotrain fused optimizer: ", what, " must be float32, bfloat16 or float16, got ",
              t.scalar_type());
}

StepControl StepControl::make(const c10::Device& device, double inv_scale) {
  const auto opts = at::TensorOptions().device(device);
  return {at::full({1}, inv_scale, opts.dtype(at::kFloat)), at::zeros({1}, opts.dtype(at::kInt))};
}

kernels::AdamScalars adam_scalars(const StepHyperParams& h, int64_t step) {
  TORCH_CHECK(step >= 1, "zerotrain optimizer: step counts from 1, got ", step);
  const double t = static_cast<double>(step);
  const double bc1 = h.bias_correction ? 1.0 - std::pow(h.beta1, t) : 1.0;
  const double bc2 = h.bias_correction ? 1.0 - std::pow(h.beta2, t) : 1.0;
  const bool l2 = h.weight_decay_mode == WeightDecayMode::kL2;
  kernels::AdamScalars s{};
  s.beta1 = static_cast<float>(h.beta1);
  s.beta2 = static_cast<float>(h.beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - h.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - h.beta2);
  s.eps = static_cast<float>(h.eps);
  s.step_size = static_cast<float>(h.lr / bc1);
  s.inv_bias_correction2 = static_cast<float>(1.0 / std::sqrt(bc2));
  s.weight_decay_l2 = l2 ? static_cast<float>(h.weight_decay) : 0.0f;
  s.lr_weight_decay_decoupled = l2 ? 0.0f : static_cast<float>(h.lr * h.weight_decay);
  return s;
}

kernels::LambScalars lamb_scalars(const StepHyperParams& h) {
  kernels::LambScalars s{};
  s.beta1 = static_cast<float>(h.beta1);
  s.beta2 = static_cast<float>(h.beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - h.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - h.beta2);
  s.eps = static_cast<float>(h.eps);
  s.weight_decay = static_cast<float>(h.weight_decay);
  s.eps_inside_sqrt = h.lamb.eps_inside_sqrt ? 1 : 0;
  return s;
}

float lamb_step_size(const StepHyperParams& h, int64_t step) {
  TORCH_CHECK(step >= 1, "zerotrain optimizer: step counts from 1, got ", step);
  const double t = static_cast<double>(step);
  double size = h.lr;
  if (h.bias_correction) size *= std::sqrt(1.0 - std::pow(h.beta2, t)) / (1.0 - std::pow(h.beta1, t));
  return static_cast<float>(size);
}

namespace {

// Checks one list: `n` defined, contiguous tensors on `device`, with `numels`
// elements each (when given), of `dtype` (when given) or of one common dtype.
void check_list(const char* op, const char* what, const std::vector<at::Tensor>& xs, size_t n,
                const c10::Device& device, const std::vector<int64_t>* numels,
                c10::optional<at::ScalarType> dtype) {
  TORCH_CHECK(xs.size() == n, "zerotrain ", op, ": ", n, " tensors expected in ", what, ", got ",
              xs.size());
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& x = xs[i];
    TORCH_CHECK(x.defined(), "zerotrain ", op, ": ", what, "[", i, "] is undefined");
    TORCH_CHECK(x.device() == device, "zerotrain ", op, ": ", what, "[", i, "] is on ", x.device(),
                ", the parameters on ", device);
    TORCH_CHECK(x.is_contiguous(), "zerotrain ", op, ": ", what, "[", i, "] must be contiguous");
    if (numels != nullptr)
      TORCH_CHECK(x.numel() == (*numels)[i], "zerotrain ", op, ": ", what, "[", i, "] has ", x.numel(),
                  " elements, the parameter ", (*numels)[i]);
    const at::ScalarType want = dtype ? *dtype : xs[0].scalar_type();
    TORCH_CHECK(x.scalar_type() == want, "zerotrain ", op, ": ", what, "[", i, "] is ", x.scalar_type(),
                (dtype ? ", must be " : ", the list's first tensor "), want);
    (void)kernel_dtype(x, what);
  }
}

std::vector<int64_t> numels_of(const std::vector<at::Tensor>& xs) {
  std::vector<int64_t> n;
  n.reserve(xs.size());
  for (const at::Tensor& x : xs) n.push_back(x.numel());
  return n;
}

void check_control(const char* op, const StepControl& c, const c10::Device& device) {
  TORCH_CHECK(c.inv_scale.defined() && c.inv_scale.numel() == 1 && c.inv_scale.scalar_type() == at::kFloat,
              "zerotrain ", op, ": StepControl.inv_scale must be one float32");
  TORCH_CHECK(c.overflow.defined() && c.overflow.numel() == 1 && c.overflow.scalar_type() == at::kInt,
              "zerotrain ", op, ": StepControl.overflow must be one int32");
  TORCH_CHECK(c.inv_scale.device() == device && c.overflow.device() == device, "zerotrain ", op,
              ": StepControl must live on the parameters' device ", device);
}

// The common checks of the update lists; returns the parameters' device.
c10::Device check_update_lists(const char* op, const std::vector<at::Tensor>& params,
                               const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& exp_avg,
                               const std::vector<at::Tensor>& exp_avg_sq,
                               const std::vector<at::Tensor>& copies, const StepControl& c) {
  TORCH_CHECK(!params.empty(), "zerotrain ", op, ": no tensors");
  const c10::Device device = params[0].device();
  const size_t n = params.size();
  check_list(op, "params", params, n, device, nullptr, at::kFloat);
  const std::vector<int64_t> numels = numels_of(params);
  check_list(op, "grads", grads, n, device, &numels, c10::nullopt);
  check_list(op, "exp_avg", exp_avg, n, device, &numels, at::kFloat);
  check_list(op, "exp_avg_sq", exp_avg_sq, n, device, &numels, at::kFloat);
  if (!copies.empty()) check_list(op, "param_copies", copies, n, device, &numels, c10::nullopt);
  check_control(op, c, device);
  return device;
}

bool cpu_overflow(const StepControl& c) { return *c.overflow.data_ptr<int32_t>() != 0; }
float cpu_inv_scale(const StepControl& c) { return *c.inv_scale.data_ptr<float>(); }

template <class T>
T* ptr(const at::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

#if !defined(ZEROTRAIN_WITH_CUDA)
[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, "zerotrain ", op, ": tensors are on CUDA but zerotrain was built without CUDA "
              "(configure with -DZEROTRAIN_WITH_CUDA=ON)");
}
#endif

}  // namespace

void fused_adam(const AdamTensors& t, const StepHyperParams& h, int64_t step, const StepControl& c) {
  RECORD_FUNCTION("zerotrain::fused_adam", std::vector<c10::IValue>());
  const c10::Device device =
      check_update_lists("fused_adam", t.params, t.grads, t.exp_avg, t.exp_avg_sq, t.param_copies, c);
  const kernels::AdamScalars s = adam_scalars(h, step);
  if (device.is_cuda()) {
#if defined(ZEROTRAIN_WITH_CUDA)
    return cuda::fused_adam(t, s, c);
#else
    no_cuda("fused_adam");
#endif
  }
  TORCH_CHECK(device.is_cpu(), "zerotrain fused_adam: unsupported device ", device);
  if (cpu_overflow(c)) return;
  const cpu::Isa isa = cpu::selected_isa().isa;
  const bool copy = !t.param_copies.empty();
  for (size_t i = 0; i < t.params.size(); ++i) {
    cpu::AdamArgs a{};
    a.param = ptr<float>(t.params[i]);
    a.exp_avg = ptr<float>(t.exp_avg[i]);
    a.exp_avg_sq = ptr<float>(t.exp_avg_sq[i]);
    a.grad = t.grads[i].data_ptr();
    a.grad_dtype = kernel_dtype(t.grads[i], "grads");
    a.param_copy = copy ? t.param_copies[i].data_ptr() : nullptr;
    a.copy_dtype = copy ? kernel_dtype(t.param_copies[i], "param_copies") : kernels::DType::kFloat32;
    a.inv_scale = cpu_inv_scale(c);
    a.scalars = s;
    cpu::adam(a, t.params[i].numel(), isa);
  }
}

namespace {
c10::Device check_lamb(const char* op, const LambTensors& t, const StepControl& c) {
  const c10::Device device =
      check_update_lists(op, t.params, t.grads, t.exp_avg, t.exp_avg_sq, t.param_copies, c);
  const std::vector<int64_t> numels = numels_of(t.params);
  check_list(op, "updates", t.updates, t.params.size(), device, &numels, at::kFloat);
  return device;
}
}  // namespace

at::Tensor fused_lamb_prepare(const LambTensors& t, const StepHyperParams& h, const StepControl& c) {
  RECORD_FUNCTION("zerotrain::fused_lamb_prepare", std::vector<c10::IValue>());
  const c10::Device device = check_lamb("fused_lamb_prepare", t, c);
  const kernels::LambScalars s = lamb_scalars(h);
  if (device.is_cuda()) {
#if defined(ZEROTRAIN_WITH_CUDA)
    return cuda::fused_lamb_prepare(t, s, c);
#else
    no_cuda("fused_lamb_prepare");
#endif
  }
  const int64_t n = static_cast<int64_t>(t.params.size());
  at::Tensor norms = at::zeros({n, 2}, at::kDouble);
  if (cpu_overflow(c)) return norms;
  const cpu::Isa isa = cpu::selected_isa().isa;
  double* out = norms.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    cpu::LambPrepareArgs a{};
    a.param = ptr<float>(t.params[k]);
    a.exp_avg = ptr<float>(t.exp_avg[k]);
    a.exp_avg_sq = ptr<float>(t.exp_avg_sq[k]);
    a.grad = t.grads[k].data_ptr();
    a.grad_dtype = kernel_dtype(t.grads[k], "grads");
    a.update = ptr<float>(t.updates[k]);
    a.inv_scale = cpu_inv_scale(c);
    a.scalars = s;
    const cpu::SquaredNorms sq = cpu::lamb_prepare(a, t.params[k].numel(), isa);
    out[2 * i] = sq.param;
    out[2 * i + 1] = sq.update;
  }
  return norms;
}

void fused_lamb_apply(const LambTensors& t, const at::Tensor& norms, const StepHyperParams& h,
                      int64_t step, const StepControl& c) {
  RECORD_FUNCTION("zerotrain::fused_lamb_apply", std::vector<c10::IValue>());
  const c10::Device device = check_lamb("fused_lamb_apply", t, c);
  const int64_t n = static_cast<int64_t>(t.params.size());
  TORCH_CHECK(norms.defined() && norms.scalar_type() == at::kDouble && norms.dim() == 2 &&
                  norms.size(0) == n && norms.size(1) == 2 && norms.is_contiguous() &&
                  norms.device() == device,
              "zerotrain fused_lamb_apply: norms must be a contiguous [", n, ", 2] float64 tensor on ",
              device);
  const float step_size = lamb_step_size(h, step);
  const auto min_coeff = static_cast<float>(h.lamb.min_coeff);
  const auto max_coeff = static_cast<float>(h.lamb.max_coeff);
  if (device.is_cuda()) {
#if defined(ZEROTRAIN_WITH_CUDA)
    return cuda::fused_lamb_apply(t, norms, step_size, min_coeff, max_coeff, c);
#else
    no_cuda("fused_lamb_apply");
#endif
  }
  if (cpu_overflow(c)) return;
  const cpu::Isa isa = cpu::selected_isa().isa;
  const double* sq = norms.data_ptr<double>();
  const bool copy = !t.param_copies.empty();
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    cpu::LambApplyArgs a{};
    a.param = ptr<float>(t.params[k]);
    a.update = ptr<float>(t.updates[k]);
    a.param_copy = copy ? t.param_copies[k].data_ptr() : nullptr;
    a.copy_dtype = copy ? kernel_dtype(t.param_copies[k], "param_copies") : kernels::DType::kFloat32;
    a.step_size = step_size * kernels::lamb_trust_ratio(sq[2 * i], sq[2 * i + 1], min_coeff, max_coeff);
    cpu::lamb_apply(a, t.params[k].numel(), isa);
  }
}

at::Tensor multi_tensor_sum_squares(const std::vector<at::Tensor>& xs, const at::Tensor& overflow) {
  RECORD_FUNCTION("zerotrain::multi_tensor_sum_squares", std::vector<c10::IValue>());
  TORCH_CHECK(!xs.empty(), "zerotrain multi_tensor_sum_squares: no tensors");
  const c10::Device device = xs[0].device();
  check_list("multi_tensor_sum_squares", "tensors", xs, xs.size(), device, nullptr, c10::nullopt);
  if (overflow.defined())
    TORCH_CHECK(overflow.numel() == 1 && overflow.scalar_type() == at::kInt && overflow.device() == device,
                "zerotrain multi_tensor_sum_squares: overflow must be one int32 on ", device);
  if (device.is_cuda()) {
#if defined(ZEROTRAIN_WITH_CUDA)
    return cuda::multi_tensor_sum_squares(xs, overflow);
#else
    no_cuda("multi_tensor_sum_squares");
#endif
  }
  const int64_t n = static_cast<int64_t>(xs.size());
  at::Tensor out = at::empty({n}, at::kDouble);
  const cpu::Isa isa = cpu::selected_isa().isa;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& x = xs[static_cast<size_t>(i)];
    const double sq = cpu::sum_squares(x.data_ptr(), kernel_dtype(x, "tensors"), x.numel(), isa);
    out.data_ptr<double>()[i] = sq;
    finite = finite && std::isfinite(sq);
  }
  if (!finite && overflow.defined()) overflow.fill_(1);
  return out;
}

void unscale_(const std::vector<at::Tensor>& xs, const StepControl& c) {
  RECORD_FUNCTION("zerotrain::unscale", std::vector<c10::IValue>());
  TORCH_CHECK(!xs.empty(), "zerotrain unscale_: no tensors");
  const c10::Device device = xs[0].device();
  check_list("unscale_", "tensors", xs, xs.size(), device, nullptr, c10::nullopt);
  check_control("unscale_", c, device);
  if (device.is_cuda()) {
#if defined(ZEROTRAIN_WITH_CUDA)
    return cuda::unscale_(xs, c);
#else
    no_cuda("unscale_");
#endif
  }
  // The CPU path reads the scale directly; ATen's own kernels are fine here.
  const float inv = cpu_inv_scale(c);
  bool finite = true;
  for (const at::Tensor& x : xs) {
    finite = finite && at::isfinite(x).all().item<bool>();
    x.mul_(inv);
  }
  if (!finite) c.overflow.fill_(1);
}

}  // namespace zerotrain::optim
