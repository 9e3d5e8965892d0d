#pragma once
// fp64 references for the fused optimizer kernels (CPU and CUDA tests), and an
// element-by-element comparison whose bound is derived from fp32's epsilon and
// the size of each term of the formula, so a cancellation in one element does
// not hide behind a norm.
//
// Each fused kernel rounds every fp32 operation once (round to nearest; no
// more than 8 roundings meet in any output), so |kernel - fp64| is bounded by
// a few fp32 epsilons times the magnitudes of the terms that were combined.
// kUlps = 8 covers every operation in the chain; it was fixed from the
// formulas before the tests first ran.

#include "optim/fused_optimizer.h"

#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

namespace zerotrain::testing {

constexpr double kEps32 = std::numeric_limits<float>::epsilon();
constexpr double kUlps = 8.0;

/// Expects |actual - expected| <= bound elementwise (all as fp64); on failure
/// reports how many elements fail and the worst one.
inline void expect_within(const at::Tensor& actual, const at::Tensor& expected, const at::Tensor& bound,
                          const std::string& what) {
  const at::Tensor a = actual.to(at::kCPU).to(at::kDouble).flatten();
  const at::Tensor e = expected.to(at::kCPU).to(at::kDouble).flatten();
  const at::Tensor b = bound.to(at::kCPU).to(at::kDouble).flatten();
  ASSERT_EQ(a.numel(), e.numel()) << what;
  const at::Tensor excess = (a - e).abs() - b;
  const at::Tensor bad = excess.gt(0) | (a.isnan() != e.isnan());
  const int64_t n_bad = bad.sum().item<int64_t>();
  if (n_bad == 0) return;
  const int64_t worst = excess.nan_to_num(1e300).argmax().item<int64_t>();
  ADD_FAILURE() << what << ": " << n_bad << " of " << a.numel() << " elements outside the bound; worst ["
                << worst << "]: got " << a[worst].item<double>() << ", expected " << e[worst].item<double>()
                << ", bound " << b[worst].item<double>();
}

/// Bitwise equality of two tensors of the same dtype.
inline void expect_bitwise_equal(const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
  ASSERT_EQ(a.numel(), b.numel()) << what;
  const at::Tensor x = a.to(at::kCPU).contiguous();
  const at::Tensor y = b.to(at::kCPU).contiguous();
  const auto* px = static_cast<const unsigned char*>(x.data_ptr());
  const auto* py = static_cast<const unsigned char*>(y.data_ptr());
  const size_t bytes = static_cast<size_t>(x.nbytes());
  for (size_t i = 0; i < bytes; ++i) {
    if (px[i] != py[i]) {
      ADD_FAILURE() << what << ": first differing byte " << i << " of " << bytes << " (element "
                    << i / x.element_size() << ")";
      return;
    }
  }
}

/// Inputs of one optimizer tensor: fp32 p, m, v (v >= 0) and a gradient in
/// `grad_dtype` holding `scale` times values of both signs and several sizes.
struct OptimInputs {
  at::Tensor p, g, m, v;
};

inline OptimInputs make_inputs(int64_t n, at::ScalarType grad_dtype, double scale, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  OptimInputs in;
  in.p = at::randn({n}, gen, at::kFloat);
  const at::Tensor mag = at::pow(10.0, at::randint(-3, 2, {n}, gen, at::kFloat));
  in.g = (at::randn({n}, gen, at::kFloat) * mag * scale).to(grad_dtype);
  in.m = at::randn({n}, gen, at::kFloat) * 0.1;
  in.v = at::rand({n}, gen, at::kFloat) * 0.01;
  return in;
}

/// The expected state after one fused Adam step from `in`, in fp64, and the
/// bound for each output.
struct AdamExpected {
  at::Tensor p, m, v;
  at::Tensor p_bound, m_bound, v_bound;
};

inline AdamExpected adam_fp64(const OptimInputs& in, const optim::StepHyperParams& h, int64_t step,
                              double inv_scale) {
  const at::Tensor p0 = in.p.to(at::kDouble), m0 = in.m.to(at::kDouble), v0 = in.v.to(at::kDouble);
  at::Tensor g = in.g.to(at::kDouble) * inv_scale;
  const bool l2 = h.weight_decay_mode == WeightDecayMode::kL2;
  if (l2) g = g + h.weight_decay * p0;
  const double bc1 = h.bias_correction ? 1.0 - std::pow(h.beta1, double(step)) : 1.0;
  const double bc2 = h.bias_correction ? 1.0 - std::pow(h.beta2, double(step)) : 1.0;
  AdamExpected e;
  e.m = h.beta1 * m0 + (1 - h.beta1) * g;
  e.v = h.beta2 * v0 + (1 - h.beta2) * g * g;
  const at::Tensor denom = e.v.sqrt() / std::sqrt(bc2) + h.eps;
  at::Tensor u = (e.m / bc1) / denom;
  if (!l2) u = u + h.weight_decay * p0;
  e.p = p0 - h.lr * u;
  const at::Tensor g_abs = g.abs() + (l2 ? h.weight_decay * p0.abs() : at::zeros_like(p0));
  e.m_bound = kUlps * kEps32 * (h.beta1 * m0.abs() + (1 - h.beta1) * g_abs);
  e.v_bound = kUlps * kEps32 * (h.beta2 * v0 + (1 - h.beta2) * g_abs * g_abs);
  const at::Tensor u_bound =
      kUlps * kEps32 * ((e.m_bound / (kUlps * kEps32)) / bc1 / denom + u.abs() + h.weight_decay * p0.abs());
  e.p_bound = kUlps * kEps32 * e.p.abs() + h.lr * u_bound;
  return e;
}

/// LAMB stage 1 in fp64: m, v, the update u and the squared norms.
struct LambExpected {
  at::Tensor m, v, u;
  at::Tensor m_bound, v_bound, u_bound;
  double p_sq = 0.0, u_sq = 0.0;
};

inline LambExpected lamb_prepare_fp64(const OptimInputs& in, const optim::StepHyperParams& h, double inv_scale) {
  const at::Tensor p0 = in.p.to(at::kDouble), m0 = in.m.to(at::kDouble), v0 = in.v.to(at::kDouble);
  const at::Tensor g = in.g.to(at::kDouble) * inv_scale;
  LambExpected e;
  e.m = h.beta1 * m0 + (1 - h.beta1) * g;
  e.v = h.beta2 * v0 + (1 - h.beta2) * g * g;
  const at::Tensor denom = h.lamb.eps_inside_sqrt ? (e.v + h.eps).sqrt() : e.v.sqrt() + h.eps;
  e.u = e.m / denom + h.weight_decay * p0;
  e.m_bound = kUlps * kEps32 * (h.beta1 * m0.abs() + (1 - h.beta1) * g.abs());
  e.v_bound = kUlps * kEps32 * (h.beta2 * v0 + (1 - h.beta2) * g * g);
  e.u_bound = kUlps * kEps32 * ((e.m_bound / (kUlps * kEps32)) / denom + e.u.abs() + h.weight_decay * p0.abs());
  e.p_sq = p0.square().sum().item<double>();
  e.u_sq = e.u.square().sum().item<double>();
  return e;
}

inline optim::StepHyperParams test_hyper(WeightDecayMode mode) {
  optim::StepHyperParams h;
  h.lr = 1e-3;
  h.beta1 = 0.9;
  h.beta2 = 0.999;
  h.eps = 1e-8;
  h.weight_decay = 0.01;
  h.weight_decay_mode = mode;
  h.bias_correction = true;
  return h;
}

}  // namespace zerotrain::testing
