// The reference optimizer steps: Adam/AdamW against LibTorch's own
// torch::optim::Adam / AdamW over 100 steps, and LAMB against a
// straightforward fp64 loop over DeepSpeed's FusedLamb formula.

#include "optim/reference_step.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace zerotrain::optim {
namespace {

StepHyperParams hyper(WeightDecayMode mode, double wd) {
  StepHyperParams h;
  h.lr = 1e-2;
  h.beta1 = 0.9;
  h.beta2 = 0.99;
  h.eps = 1e-8;
  h.weight_decay = wd;
  h.weight_decay_mode = mode;
  return h;
}

/// Gradients for step k: deterministic, of both signs and several magnitudes.
at::Tensor grad_at(int64_t numel, int k) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + k);
  return at::randn({numel}, gen, at::kFloat) * (1.0 + (k % 3));
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double rtol, double atol,
                  const std::string& what) {
  const at::Tensor diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs();
  const at::Tensor bound = b.to(at::kDouble).abs() * rtol + atol;
  const at::Tensor bad = diff.gt(bound);
  if (bad.any().item<bool>()) {
    const int64_t i = bad.nonzero()[0][0].item<int64_t>();
    ADD_FAILURE() << what << ": element " << i << " is " << a[i].item<double>() << ", expected "
                  << b[i].item<double>();
  }
}

template <typename TorchOptimizer, typename TorchOptions>
void compare_with_libtorch(WeightDecayMode mode, TorchOptions options, int64_t numel) {
  const StepHyperParams h = hyper(mode, 0.05);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor ours = at::randn({numel}, gen, at::kFloat);
  at::Tensor theirs = ours.clone().set_requires_grad(true);
  TorchOptimizer reference({theirs}, options);
  Moments m = Moments::zeros_like(ours);
  for (int k = 1; k <= 100; ++k) {
    const at::Tensor g = grad_at(numel, k);
    adam_step(ours, g, m, k, h);
    theirs.mutable_grad() = g.clone();
    reference.step();
  }
  expect_close(ours, theirs.detach(), 1e-5, 1e-6,
               std::string(mode == WeightDecayMode::kL2 ? "Adam" : "AdamW") + " after 100 steps, " +
                   std::to_string(numel) + " elements");
}

TEST(ReferenceStep, AdamWMatchesLibTorchOver100Steps) {
  for (int64_t n : {1, 7, 65537}) {
    compare_with_libtorch<torch::optim::AdamW>(
        WeightDecayMode::kDecoupled,
        torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.05), n);
  }
}

TEST(ReferenceStep, AdamL2MatchesLibTorchOver100Steps) {
  for (int64_t n : {1, 7, 65537}) {
    compare_with_libtorch<torch::optim::Adam>(
        WeightDecayMode::kL2,
        torch::optim::AdamOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.05), n);
  }
}

TEST(ReferenceStep, AdamWithoutBiasCorrectionMatchesTheFormula) {
  StepHyperParams h = hyper(WeightDecayMode::kDecoupled, 0.1);
  h.bias_correction = false;
  at::Tensor p = at::linspace(-1, 1, 9, at::kFloat);
  std::vector<double> ref(p.data_ptr<float>(), p.data_ptr<float>() + 9), m(9, 0), v(9, 0);
  Moments mo = Moments::zeros_like(p);
  for (int k = 1; k <= 5; ++k) {
    const at::Tensor g = grad_at(9, k);
    adam_step(p, g, mo, k, h);
    for (int i = 0; i < 9; ++i) {
      const double gi = g[i].item<float>();
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
      ref[i] -= h.lr * (m[i] / (std::sqrt(v[i]) + h.eps) + h.weight_decay * ref[i]);
    }
  }
  expect_close(p, at::tensor(ref, at::kDouble), 1e-5, 1e-7, "Adam without bias correction");
}

/// FusedLamb in fp64, one whole tensor: the formula of the reference sheet.
std::vector<double> lamb_reference(std::vector<double> p, int steps, int64_t numel,
                                   const StepHyperParams& h, double grad_scale) {
  std::vector<double> m(p.size(), 0), v(p.size(), 0), u(p.size());
  for (int k = 1; k <= steps; ++k) {
    const at::Tensor g = grad_at(numel, k) * grad_scale;
    double pn = 0, un = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double gi = g[i].item<float>();
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
      u[i] = m[i] / (std::sqrt(v[i]) + h.eps) + h.weight_decay * p[i];
      pn += p[i] * p[i];
      un += u[i] * u[i];
    }
    pn = std::sqrt(pn);
    un = std::sqrt(un);
    double trust = (pn == 0 || un == 0) ? 1.0 : std::min(std::max(pn / un, 0.01), 10.0);
    const double step = h.lr * std::sqrt(1 - std::pow(h.beta2, k)) / (1 - std::pow(h.beta1, k));
    for (size_t i = 0; i < p.size(); ++i) p[i] -= step * trust * u[i];
  }
  return p;
}

void check_lamb(double param_scale, double grad_scale, int64_t numel, const std::string& what) {
  StepHyperParams h = hyper(WeightDecayMode::kDecoupled, 0.01);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor p = at::randn({numel}, gen, at::kFloat) * param_scale;
  at::Tensor pd = p.to(at::kDouble);
  std::vector<double> start(pd.data_ptr<double>(), pd.data_ptr<double>() + numel);
  Moments mo = Moments::zeros_like(p);
  at::Tensor u = at::empty_like(p);
  for (int k = 1; k <= 10; ++k) {
    const LambPartialNorms n = lamb_prepare(p, grad_at(numel, k) * grad_scale, mo, u, h);
    lamb_apply(p, u, lamb_trust_ratio(std::sqrt(n.param_sq), std::sqrt(n.update_sq), h.lamb), k, h);
  }
  expect_close(p, at::tensor(lamb_reference(start, 10, numel, h, grad_scale), at::kDouble), 1e-5,
               1e-6 * param_scale, what);
}

TEST(ReferenceStep, LambMatchesTheFormulaIncludingBothClamps) {
  check_lamb(1.0, 1.0, 7, "LAMB, 7 elements");
  check_lamb(1.0, 1.0, 65537, "LAMB, 65537 elements");
  check_lamb(1000.0, 1.0, 65, "LAMB with the trust ratio clamped to max_coeff");
  check_lamb(1e-4, 1.0, 65, "LAMB with the trust ratio clamped to min_coeff");
}

TEST(ReferenceStep, LambTrustRatioEdgeCases) {
  const LambOptions o;  // [0.01, 10]
  EXPECT_EQ(lamb_trust_ratio(0.0, 3.0, o), 1.0);
  EXPECT_EQ(lamb_trust_ratio(3.0, 0.0, o), 1.0);
  EXPECT_EQ(lamb_trust_ratio(100.0, 1.0, o), 10.0);
  EXPECT_EQ(lamb_trust_ratio(1.0, 1000.0, o), 0.01);
  EXPECT_DOUBLE_EQ(lamb_trust_ratio(3.0, 2.0, o), 1.5);
}

TEST(ReferenceStep, LambOnTwoSegmentsEqualsOneWholeTensor) {
  // See Note [LAMB on shards needs whole-parameter norms].
  const StepHyperParams h = hyper(WeightDecayMode::kDecoupled, 0.01);
  const int64_t n = 1001, cut = 400;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  at::Tensor whole = at::randn({n}, gen, at::kFloat);
  at::Tensor split = whole.clone();
  Moments mw = Moments::zeros_like(whole);
  Moments ma = Moments::zeros_like(split.narrow(0, 0, cut));
  Moments mb = Moments::zeros_like(split.narrow(0, cut, n - cut));
  at::Tensor uw = at::empty_like(whole), ua = at::empty({cut}), ub = at::empty({n - cut});
  for (int k = 1; k <= 5; ++k) {
    const at::Tensor g = grad_at(n, k);
    const auto nw = lamb_prepare(whole, g, mw, uw, h);
    lamb_apply(whole, uw, lamb_trust_ratio(std::sqrt(nw.param_sq), std::sqrt(nw.update_sq), h.lamb), k, h);
    at::Tensor a = split.narrow(0, 0, cut), b = split.narrow(0, cut, n - cut);
    const auto na = lamb_prepare(a, g.narrow(0, 0, cut), ma, ua, h);
    const auto nb = lamb_prepare(b, g.narrow(0, cut, n - cut), mb, ub, h);
    const double trust = lamb_trust_ratio(std::sqrt(na.param_sq + nb.param_sq),
                                          std::sqrt(na.update_sq + nb.update_sq), h.lamb);
    lamb_apply(a, ua, trust, k, h);
    lamb_apply(b, ub, trust, k, h);
  }
  expect_close(split, whole, 1e-6, 1e-7, "LAMB on two segments");
}

TEST(ReferenceStep, RejectsNonFp32Masters) {
  at::Tensor p = at::zeros({3}, at::kHalf);
  Moments m = Moments::zeros_like(p);
  EXPECT_THROW(adam_step(p, p, m, 1, StepHyperParams{}), c10::Error);
}

}  // namespace
}  // namespace zerotrain::optim
