#pragma once
// DeepSpeed's five learning-rate schedules (deepspeed.runtime.lr_schedules),
// as pure functions of the step plus a small stateful stepper for the engine.
//
// Note [Schedules follow DeepSpeed's step convention]
// A DeepSpeed scheduler holds `last_batch_iteration` t, -1 before the first
// optimizer step. Its constructor writes lr(-1) into the optimizer, and after
// every *applied* optimizer step the engine calls step(), which sets t += 1 and
// writes lr(t); a step skipped for overflow does not advance it. So applied
// update k (k = 1, 2, ...) runs with lr(k - 2). schedule_at(t) returns exactly
// what DeepSpeed writes at t; the engine owns the order of update and step().

#include <zerotrain/config.h>

#include <cstdint>
#include <optional>

namespace zerotrain::optim {

/// What a schedule sets at one step: the lr and, for OneCycle with
/// cycle_momentum, Adam's beta1 (DeepSpeed then also forces beta2 = 0.99).
struct ScheduledValues {
  double lr = 0.0;
  std::optional<double> beta1;
  static constexpr double kOneCycleBeta2 = 0.99;
};

/// The values DeepSpeed's scheduler writes at last_batch_iteration `t`.
/// `optimizer_lr` is the optimizer's configured lr (WarmupLR's default max,
/// WarmupCosineLR's base).
ScheduledValues schedule_at(const SchedulerParams& params, double optimizer_lr, int64_t t);

/// The stepping state: last_batch_iteration, starting at the config's value.
class LrScheduler {
 public:
  LrScheduler(SchedulerParams params, double optimizer_lr);

  /// After an applied optimizer step.
  void step() { ++last_batch_iteration_; }
  ScheduledValues current() const {
    return schedule_at(params_, optimizer_lr_, last_batch_iteration_);
  }
  int64_t last_batch_iteration() const noexcept { return last_batch_iteration_; }
  /// For resuming from a checkpoint.
  void set_last_batch_iteration(int64_t t) noexcept { last_batch_iteration_ = t; }
  const SchedulerParams& params() const noexcept { return params_; }

 private:
  SchedulerParams params_;
  double optimizer_lr_;
  int64_t last_batch_iteration_;
};

}  // namespace zerotrain::optim
