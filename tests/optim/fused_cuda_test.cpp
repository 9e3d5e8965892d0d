// The CUDA fused optimizer kernels (kernels/) through their at::Tensor glue:
// against the fp64 references element by element on odd sizes, on lists of
// many tensors that span several launches, the overflow flag, reproducible
// norms, the vector and scalar paths, and the 64-bit index path. Compiled in every CUDA configuration;
// skipped without a GPU.

#include "optim/fused_reference.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zerotrain::testing {
namespace {

bool have_gpu() { return c10::cuda::device_count() > 0; }
#define REQUIRE_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: run on a GPU machine"

const int64_t kOddSizes[] = {1, 7, 65537, 1000003};
const at::ScalarType kGradTypes[] = {at::kFloat, at::kBFloat16, at::kHalf};
const c10::Device kCuda(at::kCUDA, 0);

at::Tensor gpu(const at::Tensor& t) { return t.to(kCuda); }

TEST(FusedAdamCuda, MatchesFp64OnOddSizes) {
  REQUIRE_GPU();
  for (int64_t n : kOddSizes) {
    for (at::ScalarType gt : kGradTypes) {
      for (WeightDecayMode mode : {WeightDecayMode::kDecoupled, WeightDecayMode::kL2}) {
        const optim::StepHyperParams h = test_hyper(mode);
        const OptimInputs in = make_inputs(n, gt, 1024.0, 11 + static_cast<uint64_t>(n));
        optim::AdamTensors t{{gpu(in.p)}, {gpu(in.g)}, {gpu(in.m)}, {gpu(in.v)}, {}};
        if (gt != at::kFloat) t.param_copies.push_back(at::zeros({n}, at::TensorOptions().dtype(gt).device(kCuda)));
        optim::fused_adam(t, h, 3, optim::StepControl::make(kCuda, 1.0 / 1024.0));
        const AdamExpected e = adam_fp64(in, h, 3, 1.0 / 1024.0);
        const std::string what = "n=" + std::to_string(n) + " grad=" + c10::toString(gt) +
                                 (mode == WeightDecayMode::kL2 ? " L2" : " AdamW");
        expect_within(t.params[0], e.p, e.p_bound, what + " param");
        expect_within(t.exp_avg[0], e.m, e.m_bound, what + " exp_avg");
        expect_within(t.exp_avg_sq[0], e.v, e.v_bound, what + " exp_avg_sq");
        if (!t.param_copies.empty())
          expect_bitwise_equal(t.param_copies[0], t.params[0].to(gt), what + " copy is the rounded master");
      }
    }
  }
}

TEST(FusedAdamCuda, ManyMixedTensorsAcrossLaunchesMatchFp64) {
  REQUIRE_GPU();
  // 150 tensors (more than one launch holds), one of them split across
  // launches by the block limit, and empty tensors in between.
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  std::vector<OptimInputs> ins;
  optim::AdamTensors t;
  for (int i = 0; i < 150; ++i) {
    const int64_t n = i % 37 == 5 ? 0 : 1 + (i * 7919) % 90000 + (i == 40 ? 30'000'001 : 0);
    ins.push_back(make_inputs(n, at::kHalf, 256.0, 200 + static_cast<uint64_t>(i)));
    t.params.push_back(gpu(ins.back().p));
    t.grads.push_back(gpu(ins.back().g));
    t.exp_avg.push_back(gpu(ins.back().m));
    t.exp_avg_sq.push_back(gpu(ins.back().v));
    t.param_copies.push_back(at::zeros({n}, at::TensorOptions().dtype(at::kHalf).device(kCuda)));
  }
  optim::fused_adam(t, h, 7, optim::StepControl::make(kCuda, 1.0 / 256.0));
  for (size_t i = 0; i < ins.size(); ++i) {
    const AdamExpected e = adam_fp64(ins[i], h, 7, 1.0 / 256.0);
    const std::string what = "tensor " + std::to_string(i);
    expect_within(t.params[i], e.p, e.p_bound, what + " param");
    expect_within(t.exp_avg[i], e.m, e.m_bound, what + " exp_avg");
    expect_within(t.exp_avg_sq[i], e.v, e.v_bound, what + " exp_avg_sq");
    expect_bitwise_equal(t.param_copies[i], t.params[i].to(at::kHalf), what + " copy");
  }
}

TEST(FusedLambCuda, MatchesFp64OnOddSizes) {
  REQUIRE_GPU();
  for (int64_t n : kOddSizes) {
    for (at::ScalarType gt : kGradTypes) {
      optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
      h.lamb.min_coeff = 0.01;
      h.lamb.max_coeff = 10.0;
      const OptimInputs in = make_inputs(n, gt, 8.0, 21 + static_cast<uint64_t>(n));
      optim::LambTensors t{{gpu(in.p)}, {gpu(in.g)}, {gpu(in.m)}, {gpu(in.v)},
                           {at::empty({n}, at::TensorOptions().device(kCuda))},
                           {at::zeros({n}, at::TensorOptions().dtype(at::kBFloat16).device(kCuda))}};
      const optim::StepControl c = optim::StepControl::make(kCuda, 0.125);
      const at::Tensor norms = optim::fused_lamb_prepare(t, h, c);
      const LambExpected e = lamb_prepare_fp64(in, h, 0.125);
      const std::string what = "n=" + std::to_string(n) + " grad=" + c10::toString(gt);
      expect_within(t.exp_avg[0], e.m, e.m_bound, what + " exp_avg");
      expect_within(t.exp_avg_sq[0], e.v, e.v_bound, what + " exp_avg_sq");
      expect_within(t.updates[0], e.u, e.u_bound, what + " update");
      const at::Tensor nc = norms.cpu();
      EXPECT_NEAR(nc[0][0].item<double>(), e.p_sq, 1e-12 * e.p_sq) << what;
      EXPECT_NEAR(nc[0][1].item<double>(), e.u_sq, 1e-5 * e.u_sq) << what;
      optim::fused_lamb_apply(t, norms, h, 4, c);
      const double trust = kernels::lamb_trust_ratio(e.p_sq, e.u_sq, 0.01f, 10.0f);
      const double size = optim::lamb_step_size(h, 4) * trust;
      const at::Tensor p_ref = in.p.to(at::kDouble) - size * e.u;
      expect_within(t.params[0], p_ref, kUlps * kEps32 * (p_ref.abs() + size * e.u.abs()) + size * e.u_bound,
                    what + " param");
      expect_bitwise_equal(t.param_copies[0], t.params[0].to(at::kBFloat16), what + " copy");
    }
  }
}

// Note [Vector loads where alignment allows] (kernels/vector_access.cuh): the
// same inputs through the vector path (whole allocations) and the scalar path
// (every tensor one element into a larger buffer, so no pack is aligned) give
// bitwise the same Adam step and the same unscale, for every gradient dtype,
// over two chunks and a tail of 7. Catches a pack that reads or writes the
// wrong elements (a pack stride of 1 instead of kIlp, a lost tail).
TEST(FusedCuda, VectorAndScalarPathsAgreeBitwise) {
  REQUIRE_GPU();
  const int64_t n = 2 * 65536 + 7;
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  for (at::ScalarType gt : kGradTypes) {
    const OptimInputs in = make_inputs(n, gt, 1024.0, 23);
    auto place = [&](const at::Tensor& x, bool aligned) {
      const at::Tensor g = gpu(x);
      if (aligned) return g.clone();
      at::Tensor view = at::empty({n + 1}, g.options()).narrow(0, 1, n);
      view.copy_(g);
      return view;
    };
    auto adam = [&](bool aligned) {
      optim::AdamTensors t{{place(in.p, aligned)}, {place(in.g, aligned)}, {place(in.m, aligned)},
                           {place(in.v, aligned)}, {place(at::zeros({n}, at::kBFloat16), aligned)}};
      optim::fused_adam(t, h, 3, optim::StepControl::make(kCuda, 1.0 / 1024.0));
      return t;
    };
    const optim::AdamTensors vec = adam(true), scalar = adam(false);
    const std::string what = std::string("grad ") + c10::toString(gt);
    expect_bitwise_equal(vec.params[0], scalar.params[0], what + " param");
    expect_bitwise_equal(vec.exp_avg[0], scalar.exp_avg[0], what + " exp_avg");
    expect_bitwise_equal(vec.exp_avg_sq[0], scalar.exp_avg_sq[0], what + " exp_avg_sq");
    expect_bitwise_equal(vec.param_copies[0], scalar.param_copies[0], what + " copy");
    EXPECT_FALSE(at::equal(vec.params[0].cpu(), in.p)) << "the step must change the parameters";
    const at::Tensor ga = place(in.g, true), gu = place(in.g, false);
    optim::unscale_({ga}, optim::StepControl::make(kCuda, 0.125));
    optim::unscale_({gu}, optim::StepControl::make(kCuda, 0.125));
    expect_bitwise_equal(ga, gu, what + " unscale");
  }
}

TEST(FusedCuda, SetOverflowFlagLeavesEverythingBitIdentical) {
  REQUIRE_GPU();
  const optim::StepHyperParams h = test_hyper(WeightDecayMode::kDecoupled);
  const OptimInputs in = make_inputs(1000003, at::kBFloat16, 1.0, 9);
  const optim::StepControl c = optim::StepControl::make(kCuda, 1.0);
  c.overflow.fill_(1);
  const at::Tensor copy0 = gpu(in.p.to(at::kBFloat16));
  optim::AdamTensors a{{gpu(in.p)}, {gpu(in.g)}, {gpu(in.m)}, {gpu(in.v)}, {copy0.clone()}};
  optim::fused_adam(a, h, 1, c);
  expect_bitwise_equal(a.params[0], in.p, "adam param");
  expect_bitwise_equal(a.exp_avg[0], in.m, "adam exp_avg");
  expect_bitwise_equal(a.exp_avg_sq[0], in.v, "adam exp_avg_sq");
  expect_bitwise_equal(a.param_copies[0], copy0, "adam copy");
  optim::LambTensors l{{gpu(in.p)}, {gpu(in.g)}, {gpu(in.m)}, {gpu(in.v)},
                       {at::zeros({in.p.numel()}, at::TensorOptions().device(kCuda))}, {copy0.clone()}};
  optim::fused_lamb_apply(l, optim::fused_lamb_prepare(l, h, c), h, 1, c);
  expect_bitwise_equal(l.params[0], in.p, "lamb param");
  expect_bitwise_equal(l.exp_avg[0], in.m, "lamb exp_avg");
  expect_bitwise_equal(l.exp_avg_sq[0], in.v, "lamb exp_avg_sq");
  expect_bitwise_equal(l.param_copies[0], copy0, "lamb copy");
}

TEST(FusedCuda, NormsMatchFp64AreReproducibleAndFlagNonFinite) {
  REQUIRE_GPU();
  for (at::ScalarType dt : kGradTypes) {
    std::vector<at::Tensor> xs;
    for (int64_t n : kOddSizes) xs.push_back(gpu(make_inputs(n, dt, 3.0, 31 + static_cast<uint64_t>(n)).g));
    const at::Tensor flag = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(kCuda));
    const at::Tensor sq = optim::multi_tensor_sum_squares(xs, flag);
    for (size_t i = 0; i < xs.size(); ++i) {
      const double ref = xs[i].cpu().to(at::kDouble).square().sum().item<double>();
      EXPECT_NEAR(sq[static_cast<int64_t>(i)].item<double>(), ref, 1e-12 * ref) << c10::toString(dt) << " " << i;
    }
    expect_bitwise_equal(optim::multi_tensor_sum_squares(xs, flag), sq, "a second run");
    EXPECT_EQ(flag.item<int>(), 0);
    xs[3][777777] = std::numeric_limits<float>::quiet_NaN();
    optim::multi_tensor_sum_squares(xs, flag);
    EXPECT_EQ(flag.item<int>(), 1) << c10::toString(dt);
  }
}

TEST(FusedCuda, UnscaleMultipliesAndFlagsNonFinite) {
  REQUIRE_GPU();
  for (at::ScalarType dt : kGradTypes) {
    const at::Tensor ref = at::arange(65537, at::kFloat).remainder(1000).to(dt);
    at::Tensor x = gpu(ref);
    const optim::StepControl c = optim::StepControl::make(kCuda, 0.25);
    optim::unscale_({x}, c);
    expect_bitwise_equal(x, (ref.to(at::kFloat) * 0.25).to(dt), std::string("unscale ") + c10::toString(dt));
    EXPECT_EQ(c.overflow.item<int>(), 0);
    x[65536] = std::numeric_limits<float>::infinity();
    optim::unscale_({x}, c);
    EXPECT_EQ(c.overflow.item<int>(), 1);
  }
}

TEST(FusedCuda, TensorsBeyondTwoGiElementsUse64BitIndices) {
  REQUIRE_GPU();
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  const int64_t n = (int64_t{1} << 31) + 12345;  // fp16: 4.3 GB
  if (free_bytes < static_cast<size_t>(3 * n * 2)) GTEST_SKIP() << "needs about 13 GB of free GPU memory";
  at::Tensor x = at::full({n}, 2.0, at::TensorOptions().dtype(at::kHalf).device(kCuda));
  x[n - 1] = 4.0;
  const optim::StepControl c = optim::StepControl::make(kCuda, 0.5);
  optim::unscale_({x}, c);
  EXPECT_EQ(x[n - 2].item<float>(), 1.0f);
  EXPECT_EQ(x[n - 1].item<float>(), 2.0f);
  EXPECT_EQ(x[0].item<float>(), 1.0f);
  const double sq = optim::multi_tensor_sum_squares({x}).item<double>();
  EXPECT_EQ(sq, static_cast<double>(n - 1) + 4.0);
  EXPECT_EQ(c.overflow.item<int>(), 0);
}

}  // namespace
}  // namespace zerotrain::testing
