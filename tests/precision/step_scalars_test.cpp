// The step's scalars computed on the device (Note [The step's scalars stay on
// the device], src/precision/step_scalars.h) against DeepSpeed's host formula,
// written out here: within one ulp (ATen's vectorised CPU sqrt can be one ulp
// off std::sqrt, seen here), over norms from 0 to near DBL_MAX, inf and nan,
// with and without clipping, at several loss scales.
//
// Smallest wrong implementations caught: the 1e-6 dropped from the clipping
// coefficient (injected once: ClippedAndUnclippedMatchTheHostFormulaBitwise
// failed), the coefficient not held at 1 below max_norm, the norm not divided
// by the loss scale, the overflow flag set when overflow is not checked.

#include "precision/step_scalars.h"

#include <ATen/ops/tensor.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace zerotrain::precision {
namespace {

struct HostStep {
  double norm;
  float inv_scale;
  bool overflow;
};

// DeepSpeed's step, as runtime/zero/stage_1_and_2.py and the engine compute
// it on the host: -1 for a non-finite norm, clip = max(1, (norm + 1e-6) / max).
HostStep host_formula(double norm_sq, double scale, double max_norm, bool check_overflow) {
  const bool finite = std::isfinite(norm_sq);
  const double norm = finite ? std::sqrt(norm_sq) / scale : -1.0;
  const double clip = max_norm > 0 ? std::max(1.0, (norm + 1e-6) / max_norm) : 1.0;
  return {norm, static_cast<float>(1.0 / (scale * clip)), check_overflow && !finite};
}

template <class T>
bool within_one_ulp(T got, T want) {
  return got == want || got == std::nextafter(want, std::numeric_limits<T>::infinity()) ||
         got == std::nextafter(want, -std::numeric_limits<T>::infinity());
}

std::vector<double> norms_sq() {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> v = {0.0, 1e-300, 1e-12, 0.25, 1.0, 3.7, 1e4, 2.5e9, 1e300, 1.7e308, inf,
                           std::numeric_limits<double>::quiet_NaN()};
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> exponent(-20.0, 30.0);
  for (int i = 0; i < 200; ++i) v.push_back(std::pow(10.0, exponent(rng)));
  return v;
}

TEST(StepScalars, ClippedAndUnclippedMatchTheHostFormula) {
  int clipped = 0;
  for (double scale : {1.0, 0.125, 3.5, 1024.0, 65536.0})
    for (double max_norm : {0.0, -1.0, 1e-3, 0.5, 1.0, 1e6})
      for (bool check : {false, true})
        for (double sq : norms_sq()) {
          const HostStep want = host_formula(sq, scale, max_norm, check);
          const StepScalars got = step_scalars(at::tensor({sq}, at::kDouble), scale, max_norm, check);
          SCOPED_TRACE(::testing::Message() << "norm_sq " << sq << " scale " << scale << " max_norm " << max_norm);
          EXPECT_TRUE(within_one_ulp(got.grad_norm.read(), want.norm)) << got.grad_norm.read() << " vs " << want.norm;
          EXPECT_EQ(got.control.inv_scale.scalar_type(), at::kFloat);
          const float inv = got.control.inv_scale.item<float>();
          EXPECT_TRUE(within_one_ulp(inv, want.inv_scale)) << inv << " vs " << want.inv_scale;
          EXPECT_EQ(got.control.overflow.scalar_type(), at::kInt);
          EXPECT_EQ(got.control.overflow.item<int32_t>() != 0, want.overflow);
          if (want.inv_scale != static_cast<float>(1.0 / scale)) ++clipped;
        }
  EXPECT_GT(clipped, 1000) << "the grid must exercise clipping";
}

TEST(StepScalars, NonFiniteNormReadsMinusOneAndSetsTheFlagOnlyWhenChecked) {
  for (double sq : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    const StepScalars checked = step_scalars(at::tensor({sq}, at::kDouble), 1024.0, 1.0, true);
    EXPECT_EQ(checked.grad_norm.read(), -1.0);
    EXPECT_EQ(checked.control.overflow.item<int32_t>(), 1);
    const StepScalars unchecked = step_scalars(at::tensor({sq}, at::kDouble), 1.0, 1.0, false);
    EXPECT_EQ(unchecked.control.overflow.item<int32_t>(), 0);
    EXPECT_EQ(unchecked.control.inv_scale.item<float>(), 1.0f);  // DeepSpeed: clip stays 1 for -1
  }
}

TEST(StepScalars, CopiesShareOneRead) {
  const StepScalars s = step_scalars(at::tensor({16.0}, at::kDouble), 2.0, 0.0, false);
  const DeviceScalar copy = s.grad_norm;
  EXPECT_FALSE(copy.if_read().has_value()) << "nothing read before someone asks";
  EXPECT_EQ(s.grad_norm.read(), 2.0);
  ASSERT_TRUE(copy.if_read().has_value());
  EXPECT_EQ(*copy.if_read(), 2.0);
  EXPECT_FALSE(DeviceScalar().defined());
}

}  // namespace
}  // namespace zerotrain::precision
