// The loss scaler against sequences worked out by hand from DeepSpeed's rule
// (Note [DeepSpeed's dynamic loss-scale rule]; ../shared/reference/deepspeed.md 2.1).

#include "precision/loss_scaler.h"

#include <c10/util/Exception.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zerotrain::precision {
namespace {

Fp16Config dynamic_fp16(int64_t power, int64_t window, int64_t hysteresis, bool consecutive) {
  Fp16Config c;
  c.enabled = true;
  c.initial_scale_power = power;
  c.loss_scale_window = window;
  c.hysteresis = hysteresis;
  c.consecutive_hysteresis = consecutive;
  c.min_loss_scale = 1.0;
  return c;
}

/// Runs `overflows` through a scaler; returns the scale after each update and
/// checks that exactly the overflowing steps are skipped.
std::vector<double> run(LossScaler& s, const std::vector<bool>& overflows) {
  std::vector<double> scales;
  for (size_t i = 0; i < overflows.size(); ++i) {
    const LossScaleUpdate u = s.update(overflows[i], static_cast<int64_t>(i));
    EXPECT_EQ(u.skip_step, overflows[i]) << "step " << i;
    EXPECT_EQ(u.scale, s.scale());
    scales.push_back(u.scale);
  }
  return scales;
}

TEST(LossScaler, HysteresisDelaysTheDecreaseAndTheWindowDoubles) {
  LossScaler s = LossScaler::from_config(dynamic_fp16(4, 2, 2, false));
  EXPECT_TRUE(s.is_dynamic());
  EXPECT_EQ(s.scale(), 16.0);
  // it0: overflow uses up one hysteresis; it3: 2 stable steps -> x2 (and the
  // hysteresis refills); it4 uses it up again; it5 halves; it8 doubles.
  const std::vector<bool> pattern{true, false, false, false, true, true, false, false, false};
  EXPECT_EQ(run(s, pattern),
            (std::vector<double>{16, 16, 16, 32, 32, 16, 16, 16, 32}));
  EXPECT_EQ(s.state().iteration, 9);
  EXPECT_EQ(s.state().last_overflow_iteration, 5);
  EXPECT_EQ(s.state().hysteresis_left, 2);
}

TEST(LossScaler, ConsecutiveHysteresisRefillsOnEveryCleanStep) {
  const std::vector<bool> pattern{true, false, true, true};
  LossScaler consecutive = LossScaler::from_config(dynamic_fp16(4, 100, 2, true));
  EXPECT_EQ(run(consecutive, pattern), (std::vector<double>{16, 16, 16, 8}));
  LossScaler plain = LossScaler::from_config(dynamic_fp16(4, 100, 2, false));
  EXPECT_EQ(run(plain, pattern), (std::vector<double>{16, 16, 8, 4}));
}

TEST(LossScaler, AtTheMinimumRaisesNamingStepAndScaleLikeDeepSpeed) {
  LossScaler s = LossScaler::from_config(dynamic_fp16(1, 1000, 1, false));
  const LossScaleUpdate first = s.update(true, 6);
  EXPECT_EQ(first.scale, 1.0);
  EXPECT_EQ(first.message, "OVERFLOW! step 6: skipping; loss scale 2 -> 1");
  try {
    s.update(true, 7);
    FAIL() << "no error at the minimum scale";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    EXPECT_NE(what.find("fp16 step 7 overflowed with the loss scale already at its minimum (1"),
              std::string::npos)
        << what;
  }
}

TEST(LossScaler, AtTheMinimumSkipsLoudlyWhenAskedTo) {
  Fp16Config c = dynamic_fp16(1, 1000, 1, false);
  c.min_loss_scale_action = MinLossScaleAction::kSkip;
  LossScaler s = LossScaler::from_config(c);
  s.update(true, 0);
  const LossScaleUpdate u = s.update(true, 1);
  EXPECT_TRUE(u.skip_step);
  EXPECT_EQ(u.scale, 1.0);
  EXPECT_NE(u.message.find("WARNING: OVERFLOW! step 1"), std::string::npos) << u.message;
}

TEST(LossScaler, StaticScaleNeverChangesButStillSkipsOverflow) {
  Fp16Config c;
  c.enabled = true;
  c.loss_scale = 128;
  LossScaler s = LossScaler::from_config(c);
  EXPECT_FALSE(s.is_dynamic());
  EXPECT_EQ(run(s, {false, true, false}), (std::vector<double>{128, 128, 128}));
  Fp16Config off;  // bf16 / fp32
  EXPECT_EQ(LossScaler::from_config(off).scale(), 1.0);
}

TEST(LossScaler, RestoredStateContinuesIdentically) {
  const std::vector<bool> head{true, false, false, true, false};
  const std::vector<bool> tail{false, false, true, true, false, false, false, false};
  LossScaler a = LossScaler::from_config(dynamic_fp16(8, 3, 2, false));
  run(a, head);
  LossScaler b = LossScaler::from_config(dynamic_fp16(8, 3, 2, false));
  b.restore(a.state());
  EXPECT_EQ(run(a, tail), run(b, tail));
  EXPECT_TRUE(a.state() == b.state());
}

}  // namespace
}  // namespace zerotrain::precision
