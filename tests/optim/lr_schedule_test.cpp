// Each DeepSpeed schedule against its formula at chosen steps. The expected
// numbers were computed by hand from the formulas in deepspeed/runtime/
// lr_schedules.py (see ../shared/reference/deepspeed.md, section 1.3), not by
// the code under test.

#include "optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "support/paths.h"

namespace zerotrain::optim {
namespace {

void expect_lrs(const SchedulerParams& p, double optimizer_lr,
                const std::vector<std::pair<int64_t, double>>& expected) {
  for (const auto& [t, lr] : expected) {
    EXPECT_NEAR(schedule_at(p, optimizer_lr, t).lr, lr, 1e-12 * std::max(1.0, std::abs(lr)))
        << scheduler_type_name(p) << " at t = " << t;
  }
}

TEST(LrSchedule, WarmupLRLog) {
  WarmupLRParams p;
  p.warmup_min_lr = 0.01;
  p.warmup_max_lr = 0.1;
  p.warmup_num_steps = 10;
  // gamma = ln(t+1) / ln 10 during warmup; t = -1 gives the minimum.
  expect_lrs(p, 99.0, {{-1, 0.01}, {0, 0.01}, {1, 0.037092699609758306},
                       {4, 0.0729073003902417}, {9, 0.1}, {10, 0.1}, {50, 0.1}});
}

TEST(LrSchedule, WarmupLRLinearDefaultsItsMaximumToTheOptimizerLr) {
  WarmupLRParams p;
  p.warmup_min_lr = 0.01;
  p.warmup_num_steps = 10;
  p.warmup_type = WarmupType::kLinear;
  expect_lrs(p, 0.1, {{-1, 0.01}, {0, 0.01}, {5, 0.055}, {9, 0.091}, {10, 0.1}});
}

TEST(LrSchedule, WarmupLRUsesAtLeastTwoWarmupSteps) {
  WarmupLRParams p;
  p.warmup_max_lr = 1.0;
  p.warmup_num_steps = 1;  // max(2, 1) = 2
  p.warmup_type = WarmupType::kLinear;
  expect_lrs(p, 0.0, {{0, 0.0}, {1, 0.5}, {2, 1.0}});
}

TEST(LrSchedule, WarmupDecayLR) {
  WarmupDecayLRParams p;
  p.total_num_steps = 30;
  p.warmup_num_steps = 10;
  p.warmup_type = WarmupType::kLinear;  // min 0, max 0.001 (DeepSpeed's defaults)
  // Then gamma = max(0, (30 - t) / 20).
  expect_lrs(p, 99.0, {{-1, 0.0}, {3, 0.0003}, {10, 0.001}, {20, 0.0005}, {30, 0.0}, {40, 0.0}});
}

TEST(LrSchedule, WarmupCosineLRIsZeroBeforeTheFirstStep) {
  WarmupCosineLRParams p;
  p.total_num_steps = 30;
  p.warmup_num_steps = 10;
  p.warmup_min_ratio = 0.1;
  p.warmup_type = WarmupType::kLinear;
  // ratio = 0.1 + 0.9 t/10 in warmup; then 1e-4 + (1 - 1e-4)(1 + cos(pi p))/2
  // with p = min(1, (t - 9) / 20); lr = 0.5 ratio.
  expect_lrs(p, 0.5, {{-1, 0.0}, {0, 0.05}, {5, 0.275}, {10, 0.4969223929402696},
                      {19, 0.250025}, {29, 5e-05}, {35, 5e-05}});
}

TEST(LrSchedule, OneCycleLrAndMomentum) {
  OneCycleParams p;
  p.cycle_min_lr = 0.01;
  p.cycle_max_lr = 0.1;
  p.cycle_first_step_size = 4;
  p.cycle_second_step_size = 6;
  p.decay_lr_rate = 0.5;
  p.decay_step_size = 2;
  p.cycle_min_mom = 0.8;
  p.cycle_max_mom = 0.9;
  p.decay_mom_rate = 0.1;
  // x = fractional part of (t + 1) / 10; up over 4 steps, down over 6; after
  // the cycle lr = 0.01 / (1 + 0.5 (t - 9) / 2) and beta1 = 0.9 (1 + 0.1 (t - 9) / 2).
  const std::vector<std::tuple<int64_t, double, double>> expected{
      {-1, 0.01, 0.9},   {0, 0.0325, 0.875}, {2, 0.0775, 0.825},  {3, 0.1, 0.8},
      {5, 0.07, 0.8333333333333334}, {8, 0.025, 0.8833333333333333}, {9, 0.01, 0.9},
      {10, 0.008, 0.945}, {13, 0.005, 1.08}};
  for (const auto& [t, lr, beta1] : expected) {
    const ScheduledValues v = schedule_at(p, 99.0, t);
    EXPECT_NEAR(v.lr, lr, 1e-12) << "t = " << t;
    ASSERT_TRUE(v.beta1.has_value());
    EXPECT_NEAR(*v.beta1, beta1, 1e-12) << "t = " << t;
  }
  EXPECT_EQ(ScheduledValues::kOneCycleBeta2, 0.99);
  p.cycle_momentum = false;
  EXPECT_FALSE(schedule_at(p, 99.0, 3).beta1.has_value());
  p.decay_lr_rate = 0.0;  // no decay: the minimum after the cycle
  EXPECT_DOUBLE_EQ(schedule_at(p, 99.0, 13).lr, 0.01);
}

TEST(LrSchedule, LRRangeTest) {
  LRRangeTestParams p;
  p.min_lr = 1e-3;
  p.step_size = 4;
  p.step_rate = 2.0;
  // lr = 1e-3 (1 + 2 (t + 1) / 4), floored inside when staircase.
  expect_lrs(p, 99.0, {{-1, 0.001}, {0, 0.0015}, {2, 0.0025}, {3, 0.003}, {6, 0.0045}});
  p.staircase = true;
  expect_lrs(p, 99.0, {{-1, 0.001}, {0, 0.001}, {2, 0.001}, {3, 0.003}, {6, 0.003}});
}

TEST(LrScheduler, StartsAtTheConfiguredIterationAndSteps) {
  WarmupLRParams p;
  p.warmup_min_lr = 0.01;
  p.warmup_max_lr = 0.1;
  p.warmup_num_steps = 10;
  p.warmup_type = WarmupType::kLinear;
  LrScheduler s(p, 0.5);
  EXPECT_EQ(s.last_batch_iteration(), -1);
  EXPECT_DOUBLE_EQ(s.current().lr, 0.01);
  for (int i = 0; i < 6; ++i) s.step();
  EXPECT_EQ(s.last_batch_iteration(), 5);
  EXPECT_NEAR(s.current().lr, 0.055, 1e-15);
  s.set_last_batch_iteration(20);
  EXPECT_DOUBLE_EQ(s.current().lr, 0.1);

  p.last_batch_iteration = 4;  // a resumed schedule
  EXPECT_EQ(LrScheduler(p, 0.5).last_batch_iteration(), 4);
}

TEST(LrScheduler, FromEveryExampleSchedulerConfig) {
  for (const std::string name : {"sched_warmup_decay_lr", "sched_warmup_cosine_lr",
                                 "sched_one_cycle", "sched_lr_range_test"}) {
    const Config c = Config::from_file(testing::config_path(name + ".json"));
    ASSERT_TRUE(c.scheduler().has_value()) << name;
    const double lr = c.optimizer() ? c.optimizer()->lr : 1e-3;
    LrScheduler s(*c.scheduler(), lr);
    const double before = s.current().lr;
    EXPECT_TRUE(std::isfinite(before) && before >= 0) << name;
    s.step();
    EXPECT_DOUBLE_EQ(s.current().lr, schedule_at(*c.scheduler(), lr, 0).lr) << name;
  }
}

}  // namespace
}  // namespace zerotrain::optim
