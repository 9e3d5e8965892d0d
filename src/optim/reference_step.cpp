#include "optim/reference_step.h"

#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace zerotrain::optim {

namespace {
void check_fp32(const char* what, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat, "zerotrain optimizer: ", what,
              " must be float32 (the master copy), got ", t.scalar_type());
}
}  // namespace

StepHyperParams StepHyperParams::from_config(const OptimizerConfig& c) {
  StepHyperParams h;
  h.lr = c.lr;
  h.beta1 = c.betas[0];
  h.beta2 = c.betas[1];
  h.eps = c.eps;
  h.weight_decay = c.weight_decay;
  h.bias_correction = c.bias_correction;
  h.weight_decay_mode = c.weight_decay_mode;
  h.lamb = c.lamb;
  return h;
}

Moments Moments::zeros_like(const at::Tensor& param) {
  return {at::zeros_like(param), at::zeros_like(param)};
}

void adam_step(at::Tensor& param, const at::Tensor& grad, Moments& m, int64_t step,
               const StepHyperParams& h) {
  check_fp32("param", param);
  TORCH_CHECK(step >= 1, "zerotrain optimizer: step counts from 1, got ", step);
  at::Tensor g = grad.to(at::kFloat);
  if (h.weight_decay_mode == WeightDecayMode::kL2 && h.weight_decay != 0.0) {
    g = g.add(param, h.weight_decay);
  }
  m.exp_avg.mul_(h.beta1).add_(g, 1.0 - h.beta1);
  m.exp_avg_sq.mul_(h.beta2).addcmul_(g, g, 1.0 - h.beta2);
  const double bc1 = h.bias_correction ? 1.0 - std::pow(h.beta1, double(step)) : 1.0;
  const double bc2 = h.bias_correction ? 1.0 - std::pow(h.beta2, double(step)) : 1.0;
  at::Tensor denom = m.exp_avg_sq.div(bc2).sqrt_().add_(h.eps);
  at::Tensor update = m.exp_avg.div(bc1).div_(denom);
  if (h.weight_decay_mode == WeightDecayMode::kDecoupled && h.weight_decay != 0.0) {
    update.add_(param, h.weight_decay);
  }
  param.add_(update, -h.lr);
}

LambPartialNorms lamb_prepare(const at::Tensor& param, const at::Tensor& grad, Moments& m,
                              at::Tensor& update, const StepHyperParams& h) {
  check_fp32("param", param);
  at::Tensor g = grad.to(at::kFloat);
  m.exp_avg.mul_(h.beta1).add_(g, 1.0 - h.beta1);
  m.exp_avg_sq.mul_(h.beta2).addcmul_(g, g, 1.0 - h.beta2);
  at::Tensor denom = h.lamb.eps_inside_sqrt ? m.exp_avg_sq.add(h.eps).sqrt_()
                                            : m.exp_avg_sq.sqrt().add_(h.eps);
  update.copy_(m.exp_avg.div(denom));
  if (h.weight_decay != 0.0) update.add_(param, h.weight_decay);
  LambPartialNorms n;
  n.param_sq = param.to(at::kDouble).square().sum().item<double>();
  n.update_sq = update.to(at::kDouble).square().sum().item<double>();
  return n;
}

double lamb_trust_ratio(double param_norm, double update_norm, const LambOptions& o) {
  if (param_norm == 0.0 || update_norm == 0.0) return 1.0;
  return std::clamp(param_norm / update_norm, o.min_coeff, o.max_coeff);
}

void lamb_apply(at::Tensor& param, const at::Tensor& update, double trust_ratio, int64_t step,
                const StepHyperParams& h) {
  TORCH_CHECK(step >= 1, "zerotrain optimizer: step counts from 1, got ", step);
  double step_size = h.lr;
  if (h.bias_correction) {
    step_size *= std::sqrt(1.0 - std::pow(h.beta2, double(step))) /
                 (1.0 - std::pow(h.beta1, double(step)));
  }
  param.add_(update, -step_size * trust_ratio);
}

}  // namespace zerotrain::optim
