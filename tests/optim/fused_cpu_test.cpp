// The CPU fused optimizer (src/optim/cpu/): every instruction set against an
// fp64 reference element by element on odd sizes, the glue on lists of many
// tensors, Adam/AdamW against LibTorch over 100 steps, LAMB against the
// reference step, bitwise agreement across instruction sets and thread
// counts, the overflow flag, the 16-bit conversions, and input errors.

#include "optim/cpu/cpu_optim.h"
#include "optim/cpu/half_bits.h"
#include "optim/fused_reference.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace zerotrain::testing {
namespace {

using optim::cpu::Isa;

const int64_t kOddSizes[] = {1, 7, 65537, 1000003};
const at::ScalarType kGradTypes[] = {at::kFloat, at::kBFloat16, at::kHalf};

std::string name(Isa isa, int64_t n, at::ScalarType g, const char* extra = "") {
  return std::string(optim::cpu::isa_name(isa)) + " n=" + std::to_string(n) + " grad=" +
         c10::toString(g) + extra;
}

// Runs one CPU Adam step through the raw entry point on copies of `in`.
struct AdamOut {
  at::Tensor p, m, v, copy;
};
AdamOut run_adam(const OptimInputs& in, const optim::StepHyperParams& h, int64_t step, double inv_scale,
                 c10::optional<at::ScalarType> copy_dtype, Isa isa) {
  AdamOut o{in.p.clone(), in.m.clone(), in.v.clone(), at::Tensor()};
  if (copy_dtype) o.copy = at::full({in.p.numel()}, 7.0, *copy_dtype);
  optim::cpu::AdamArgs a{};
  a.param = o.p.data_ptr<float>();
  a.exp_avg = o.m.data_ptr<float>();
  a.exp_avg_sq = o.v.data_ptr<float>();
  a.grad = in.g.data_ptr();
  a.grad_dtype = optim::kernel_dtype(in.g, "grad");
  a.param_copy = copy_dtype ? o.copy.data_ptr() : nullptr;
  a.copy_dtype = copy_dtype ? optim::kernel_dtype(o.copy, "copy") : kernels::DType::kFloat32;
  a.inv_scale = static_cast<float>(inv_scale);
  a.scalars = optim::adam_scalars(h, step);
  optim::cpu::adam(a, in.p.numel(), isa);
  return o;
}

TEST(HalfBits, WideningMatchesC10ForEveryPattern) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto b = static_cast<uint16_t>(bits);
    const float bf = optim::cpu::bf16_to_float(b);
    const float hf = optim::cpu::fp16_to_float(b);
    const float bf_ref = static_cast<float>(c10::BFloat16(b, c10::BFloat16::from_bits()));
    const float hf_ref = static_cast<float>(c10::Half(b, c10::Half::from_bits()));
    if (std::isnan(bf_ref)) EXPECT_TRUE(std::isnan(bf)) << bits;
    else EXPECT_EQ(optim::cpu::bits_from_float(bf), optim::cpu::bits_from_float(bf_ref)) << bits;
    if (std::isnan(hf_ref)) EXPECT_TRUE(std::isnan(hf)) << bits;
    else EXPECT_EQ(optim::cpu::bits_from_float(hf), optim::cpu::bits_from_float(hf_ref)) << bits;
  }
}

TEST(HalfBits, RoundingMatchesC10) {
  // Every float whose bits step by a prime stride, plus the edges.
  std::vector<float> xs = {0.0f, -0.0f, 65504.0f, 65520.0f, -65520.0f, 1e-8f, 5.96e-8f, 2.98e-8f,
                           3.4e38f, std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(), std::nanf("")};
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 65521) xs.push_back(optim::cpu::float_from_bits(static_cast<uint32_t>(u)));
  for (float x : xs) {
    const uint16_t b = optim::cpu::float_to_bf16(x);
    const uint16_t h = optim::cpu::float_to_fp16(x);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(optim::cpu::bf16_to_float(b)));
      EXPECT_TRUE(std::isnan(optim::cpu::fp16_to_float(h)));
      continue;
    }
    EXPECT_EQ(b, c10::BFloat16(x).x) << x;
    EXPECT_EQ(h, c10::Half(x).x) << x;
  }
}

TEST(FusedAdamCpu, EveryInstructionSetMatchesFp64OnOddSizes) {
  for (Isa isa : optim::cpu::supported_isas()) {
    for (int64_t n : kOddSizes) {
      for (at::ScalarType gt : kGradTypes) {
        for (WeightDecayMode mode : {WeightDecayMode::kDecoupled, WeightDecayMode::kL2}) {
          const optim::StepHyperParams h = test_hyper(mode);
          const double scale = 1024.0;  // the gradients carry a loss scale the step removes
          const OptimInputs in = make_inputs(n, gt, scale, 11 + static_cast<uint64_t>(n));
          const int64_t step = 3;
          const c10::optional<at::ScalarType> copy =
              gt == at::kFloat ? c10::nullopt : c10::optional<at::ScalarType>(gt);
          const AdamOut o = run_adam(in, h, step, 1.0 / scale, copy, isa);
          const AdamExpected e = adam_fp64(in, h, step, 1.0 / scale);
          const std::string what = name(isa, n, gt, mode == WeightDecayMode::kL2 ? " L2" : " AdamW");
          expect_within(o.m, e.m, e.m_bound, what + " exp_avg");
          expect_within(o.v, e.v, e.v_bound, what + " exp_avg_sq");
          expect_within(o.p, e.p, e.p_bound, what + " param");
          if (copy) expect_bitwise_equal(o.copy, o.p.to(*copy), what + " copy is the rounded master");
        }
      }
    }
  }
}

TEST(FusedAdamCpu, EveryCopyDtypeIsTheRoundedMaster) {
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  const OptimInputs in = make_inputs(65537, at::kFloat, 1.0, 5);
  for (at::ScalarType ct : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const AdamOut o = run_adam(in, h, 1, 1.0, ct, optim::cpu::selected_isa().isa);
    expect_bitwise_equal(o.copy, o.p.to(ct), std::string("copy ") + c10::toString(ct));
  }
}

TEST(FusedAdamCpu, ListOfManyMixedSizeTensorsMatchesFp64) {
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  std::vector<OptimInputs> ins;
  optim::AdamTensors t;
  for (int i = 0; i < 40; ++i) {
    const int64_t n = 1 + (i * 7919) % 50000 + (i == 17 ? 1000003 : 0);
    ins.push_back(make_inputs(n, at::kBFloat16, 512.0, 100 + static_cast<uint64_t>(i)));
    t.params.push_back(ins.back().p.clone());
    t.grads.push_back(ins.back().g);
    t.exp_avg.push_back(ins.back().m.clone());
    t.exp_avg_sq.push_back(ins.back().v.clone());
    t.param_copies.push_back(at::zeros({n}, at::kBFloat16));
  }
  optim::fused_adam(t, h, 10, optim::StepControl::make(at::kCPU, 1.0 / 512.0));
  for (size_t i = 0; i < ins.size(); ++i) {
    const AdamExpected e = adam_fp64(ins[i], h, 10, 1.0 / 512.0);
    const std::string what = "tensor " + std::to_string(i);
    expect_within(t.params[i], e.p, e.p_bound, what + " param");
    expect_within(t.exp_avg[i], e.m, e.m_bound, what + " exp_avg");
    expect_within(t.exp_avg_sq[i], e.v, e.v_bound, what + " exp_avg_sq");
    expect_bitwise_equal(t.param_copies[i], t.params[i].to(at::kBFloat16), what + " copy");
  }
}

// Note [Every CPU instruction set gives the same bits]
TEST(FusedCpu, EveryInstructionSetAndThreadCountGivesTheSameBits) {
  const std::vector<Isa> isas = optim::cpu::supported_isas();
  if (isas.size() < 2) GTEST_SKIP() << "this CPU runs only the scalar kernels";
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  const int64_t n = 1000003;
  const OptimInputs in = make_inputs(n, at::kHalf, 64.0, 77);
  const AdamOut base = run_adam(in, h, 5, 1.0 / 64.0, at::kHalf, isas[0]);
  const double base_sq = optim::cpu::sum_squares(in.g.data_ptr(), kernels::DType::kFloat16, n, isas[0]);
  const int threads = at::get_num_threads();
  for (Isa isa : isas) {
    for (int nt : {1, 2}) {
      at::set_num_threads(nt);
      const std::string what = std::string(optim::cpu::isa_name(isa)) + " threads=" + std::to_string(nt);
      const AdamOut o = run_adam(in, h, 5, 1.0 / 64.0, at::kHalf, isa);
      expect_bitwise_equal(o.p, base.p, what + " param");
      expect_bitwise_equal(o.m, base.m, what + " exp_avg");
      expect_bitwise_equal(o.v, base.v, what + " exp_avg_sq");
      expect_bitwise_equal(o.copy, base.copy, what + " copy");
      const double sq = optim::cpu::sum_squares(in.g.data_ptr(), kernels::DType::kFloat16, n, isa);
      EXPECT_EQ(std::memcmp(&sq, &base_sq, sizeof sq), 0) << what << ": " << sq << " vs " << base_sq;
    }
  }
  at::set_num_threads(threads);
}

TEST(FusedAdamCpu, MatchesLibTorchAdamWAndAdamOver100Steps) {
  const int64_t n = 65537;
  for (WeightDecayMode mode : {WeightDecayMode::kDecoupled, WeightDecayMode::kL2}) {
    optim::StepHyperParams h = test_hyper(mode);
    h.lr = 1e-2;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    const at::Tensor init = at::randn({n}, gen, at::kFloat);
    at::Tensor ref = init.clone().set_requires_grad(true);
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (mode == WeightDecayMode::kDecoupled) {
      opt = std::make_unique<torch::optim::AdamW>(
          std::vector<at::Tensor>{ref}, torch::optim::AdamWOptions(h.lr).betas({h.beta1, h.beta2}).eps(h.eps).weight_decay(h.weight_decay));
    } else {
      opt = std::make_unique<torch::optim::Adam>(
          std::vector<at::Tensor>{ref}, torch::optim::AdamOptions(h.lr).betas({h.beta1, h.beta2}).eps(h.eps).weight_decay(h.weight_decay));
    }
    optim::AdamTensors t{{init.clone()}, {at::Tensor()}, {at::zeros({n})}, {at::zeros({n})}, {}};
    for (int k = 1; k <= 100; ++k) {
      auto gk = at::make_generator<at::CPUGeneratorImpl>(1000 + k);
      const at::Tensor g = at::randn({n}, gk, at::kFloat) * (1.0 + k % 3);
      ref.mutable_grad() = g.clone();
      opt->step();
      t.grads[0] = g;
      optim::fused_adam(t, h, k, optim::StepControl::make(at::kCPU, 1.0));
    }
    const at::Tensor r = ref.detach();
    expect_within(t.params[0], r, r.abs() * 1e-5 + 1e-6,
                  mode == WeightDecayMode::kL2 ? "Adam (L2) vs torch::optim::Adam" : "AdamW vs torch::optim::AdamW");
  }
}

// LAMB stage 1 and 2 of one tensor through the raw entries.
TEST(FusedLambCpu, EveryInstructionSetMatchesFp64OnOddSizes) {
  for (Isa isa : optim::cpu::supported_isas()) {
    for (int64_t n : kOddSizes) {
      for (at::ScalarType gt : kGradTypes) {
        for (bool inside : {false, true}) {
          optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
          h.lamb.eps_inside_sqrt = inside;
          h.lamb.max_coeff = 10.0;
          h.lamb.min_coeff = 0.01;
          const OptimInputs in = make_inputs(n, gt, 8.0, 21 + static_cast<uint64_t>(n));
          at::Tensor p = in.p.clone(), m = in.m.clone(), v = in.v.clone(), u = at::empty({n});
          optim::cpu::LambPrepareArgs a{p.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(),
                                        in.g.data_ptr(), optim::kernel_dtype(in.g, "g"), u.data_ptr<float>(),
                                        0.125f, optim::lamb_scalars(h)};
          const optim::cpu::SquaredNorms sq = optim::cpu::lamb_prepare(a, n, isa);
          const LambExpected e = lamb_prepare_fp64(in, h, 0.125);
          const std::string what = name(isa, n, gt, inside ? " eps inside sqrt" : "");
          expect_within(m, e.m, e.m_bound, what + " exp_avg");
          expect_within(v, e.v, e.v_bound, what + " exp_avg_sq");
          expect_within(u, e.u, e.u_bound, what + " update");
          EXPECT_NEAR(sq.param, e.p_sq, 1e-12 * e.p_sq) << what;
          EXPECT_NEAR(sq.update, e.u_sq, 1e-5 * e.u_sq) << what;  // u itself carries fp32 rounding
          const int64_t step = 4;
          const double trust = kernels::lamb_trust_ratio(e.p_sq, e.u_sq, 0.01f, 10.0f);
          const double size = optim::lamb_step_size(h, step) * trust;
          at::Tensor copy = at::zeros({n}, at::kHalf);
          optim::cpu::LambApplyArgs b{p.data_ptr<float>(), u.data_ptr<float>(), copy.data_ptr(),
                                      kernels::DType::kFloat16, static_cast<float>(size)};
          optim::cpu::lamb_apply(b, n, isa);
          const at::Tensor p_ref = in.p.to(at::kDouble) - size * e.u;
          expect_within(p, p_ref, kUlps * kEps32 * (p_ref.abs() + size * e.u.abs()) + size * e.u_bound,
                        what + " param");
          expect_bitwise_equal(copy, p.to(at::kHalf), what + " copy");
        }
      }
    }
  }
}

TEST(FusedLambCpu, MatchesReferenceStepOverTenSteps) {
  optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  h.lr = 1e-2;
  const std::vector<int64_t> sizes = {65537, 33, 1000};
  optim::LambTensors t;
  std::vector<at::Tensor> ref_p;
  std::vector<optim::Moments> ref_m;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(50 + i);
    const at::Tensor p = at::randn({sizes[i]}, gen, at::kFloat);
    t.params.push_back(p.clone());
    t.exp_avg.push_back(at::zeros({sizes[i]}));
    t.exp_avg_sq.push_back(at::zeros({sizes[i]}));
    t.updates.push_back(at::empty({sizes[i]}));
    t.grads.push_back(at::Tensor());
    ref_p.push_back(p.clone());
    ref_m.push_back(optim::Moments::zeros_like(p));
  }
  for (int k = 1; k <= 10; ++k) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(900 + 10 * k + i);
      t.grads[i] = at::randn({sizes[i]}, gen, at::kFloat);
      at::Tensor ref_u = at::empty({sizes[i]});
      const optim::LambPartialNorms part = optim::lamb_prepare(ref_p[i], t.grads[i], ref_m[i], ref_u, h);
      const double trust = optim::lamb_trust_ratio(std::sqrt(part.param_sq), std::sqrt(part.update_sq), h.lamb);
      optim::lamb_apply(ref_p[i], ref_u, trust, k, h);
    }
    const optim::StepControl c = optim::StepControl::make(at::kCPU, 1.0);
    const at::Tensor norms = optim::fused_lamb_prepare(t, h, c);
    optim::fused_lamb_apply(t, norms, h, k, c);
  }
  for (size_t i = 0; i < sizes.size(); ++i)
    expect_within(t.params[i], ref_p[i], ref_p[i].abs() * 1e-5 + 1e-6, "LAMB tensor " + std::to_string(i));
}

TEST(FusedCpu, SetOverflowFlagLeavesEverythingBitIdentical) {
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  const OptimInputs in = make_inputs(65537, at::kBFloat16, 1.0, 9);
  optim::StepControl c = optim::StepControl::make(at::kCPU, 1.0);
  c.overflow.fill_(1);
  optim::AdamTensors a{{in.p.clone()}, {in.g}, {in.m.clone()}, {in.v.clone()}, {in.p.to(at::kBFloat16)}};
  const at::Tensor copy_before = a.param_copies[0].clone();
  optim::fused_adam(a, h, 1, c);
  expect_bitwise_equal(a.params[0], in.p, "adam param");
  expect_bitwise_equal(a.exp_avg[0], in.m, "adam exp_avg");
  expect_bitwise_equal(a.exp_avg_sq[0], in.v, "adam exp_avg_sq");
  expect_bitwise_equal(a.param_copies[0], copy_before, "adam copy");
  optim::LambTensors l{{in.p.clone()}, {in.g}, {in.m.clone()}, {in.v.clone()}, {at::zeros_like(in.p)},
                       {in.p.to(at::kBFloat16)}};
  const at::Tensor norms = optim::fused_lamb_prepare(l, h, c);
  optim::fused_lamb_apply(l, norms, h, 1, c);
  expect_bitwise_equal(l.params[0], in.p, "lamb param");
  expect_bitwise_equal(l.exp_avg[0], in.m, "lamb exp_avg");
  expect_bitwise_equal(l.exp_avg_sq[0], in.v, "lamb exp_avg_sq");
  expect_bitwise_equal(l.param_copies[0], copy_before, "lamb copy");
  // Cleared, the same call updates.
  c.overflow.zero_();
  optim::fused_adam(a, h, 1, c);
  EXPECT_FALSE(a.params[0].equal(in.p));
}

TEST(FusedCpu, SumSquaresMatchesFp64AndFlagsNonFinite) {
  for (at::ScalarType dt : kGradTypes) {
    std::vector<at::Tensor> xs;
    for (int64_t n : kOddSizes) xs.push_back(make_inputs(n, dt, 3.0, 31 + static_cast<uint64_t>(n)).g);
    const at::Tensor flag = at::zeros({1}, at::kInt);
    const at::Tensor sq = optim::multi_tensor_sum_squares(xs, flag);
    for (size_t i = 0; i < xs.size(); ++i) {
      const double ref = xs[i].to(at::kDouble).square().sum().item<double>();
      EXPECT_NEAR(sq[static_cast<int64_t>(i)].item<double>(), ref, 1e-12 * ref) << c10::toString(dt) << " " << i;
    }
    EXPECT_EQ(flag.item<int>(), 0);
    xs[2][12345] = std::numeric_limits<float>::infinity();
    const at::Tensor sq2 = optim::multi_tensor_sum_squares(xs, flag);
    EXPECT_EQ(flag.item<int>(), 1) << c10::toString(dt);
    EXPECT_TRUE(std::isinf(sq2[2].item<double>()));
  }
}

TEST(FusedCpu, UnscaleMultipliesAndFlagsNonFinite) {
  at::Tensor x = at::arange(100, at::kFloat).to(at::kBFloat16);
  optim::StepControl c = optim::StepControl::make(at::kCPU, 0.5);
  optim::unscale_({x}, c);
  EXPECT_TRUE(x.equal((at::arange(100, at::kFloat) * 0.5).to(at::kBFloat16)));
  EXPECT_EQ(c.overflow.item<int>(), 0);
  x[3] = std::nanf("");
  optim::unscale_({x}, c);
  EXPECT_EQ(c.overflow.item<int>(), 1);
}

TEST(FusedCpu, BadListsAreErrorsNamingTheTensor) {
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  const optim::StepControl c = optim::StepControl::make(at::kCPU, 1.0);
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const at::Tensor p = at::zeros({10});
  expect_error([&] { optim::fused_adam({{p}, {at::zeros({9})}, {at::zeros({10})}, {at::zeros({10})}, {}}, h, 1, c); },
               "grads[0] has 9 elements");
  expect_error([&] { optim::fused_adam({{p.to(at::kHalf)}, {p}, {p}, {p}, {}}, h, 1, c); }, "params[0] is Half");
  expect_error([&] { optim::fused_adam({{p}, {p.to(at::kDouble)}, {p}, {p}, {}}, h, 1, c); },
               "grads must be float32, bfloat16 or float16");
  expect_error([&] { optim::fused_adam({{p}, {p}, {p}, {p}, {}}, h, 0, c); }, "step counts from 1");
  expect_error([&] { optim::fused_adam({{p, p}, {p}, {p, p}, {p, p}, {}}, h, 1, c); },
               "2 tensors expected in grads, got 1");
  expect_error([&] { optim::fused_adam({{at::zeros({10, 2}).t()}, {p}, {p}, {p}, {}}, h, 1, c); },
               "params[0] must be contiguous");
}

}  // namespace
}  // namespace zerotrain::testing
