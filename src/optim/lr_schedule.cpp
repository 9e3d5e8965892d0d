// The formulas of deepspeed/runtime/lr_schedules.py, one function per schedule.
// See Note [Schedules follow DeepSpeed's step convention] in lr_schedule.h.

#include "optim/lr_schedule.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace zerotrain::optim {

namespace {

/// WarmupLR's gamma during warmup: log or linear in t over max(2, n) steps,
/// 1 afterwards. Shared by WarmupLR, WarmupDecayLR and WarmupCosineLR.
double warmup_gamma(WarmupType type, int64_t warmup_num_steps, int64_t t) {
  const int64_t w = std::max<int64_t>(2, warmup_num_steps);
  if (t >= w) return 1.0;
  if (type == WarmupType::kLog) return std::log(static_cast<double>(t + 1)) / std::log(double(w));
  return static_cast<double>(t) / static_cast<double>(w);
}

ScheduledValues warmup_lr(const WarmupLRParams& p, double optimizer_lr, int64_t t) {
  const double max_lr = p.warmup_max_lr.value_or(optimizer_lr);
  if (t < 0) return {p.warmup_min_lr, std::nullopt};
  return {p.warmup_min_lr + (max_lr - p.warmup_min_lr) * warmup_gamma(p.warmup_type, p.warmup_num_steps, t),
          std::nullopt};
}

ScheduledValues warmup_decay_lr(const WarmupDecayLRParams& p, int64_t t) {
  if (t < 0) return {p.warmup_min_lr, std::nullopt};
  const int64_t w = std::max<int64_t>(2, p.warmup_num_steps);
  double gamma = 0.0;
  if (t < w) {
    gamma = warmup_gamma(p.warmup_type, p.warmup_num_steps, t);
  } else {
    gamma = std::max(0.0, static_cast<double>(p.total_num_steps - t) /
                              std::max(1.0, static_cast<double>(p.total_num_steps - w)));
  }
  return {p.warmup_min_lr + (p.warmup_max_lr - p.warmup_min_lr) * gamma, std::nullopt};
}

ScheduledValues warmup_cosine_lr(const WarmupCosineLRParams& p, double optimizer_lr, int64_t t) {
  if (t < 0) return {0.0, std::nullopt};  // DeepSpeed writes lr 0 before the first step
  const int64_t w = std::max<int64_t>(2, p.warmup_num_steps);
  double ratio = 0.0;
  if (t < w) {
    ratio = p.warmup_min_ratio +
            (1.0 - p.warmup_min_ratio) * warmup_gamma(p.warmup_type, p.warmup_num_steps, t);
  } else {
    const double progress = std::min(
        1.0, static_cast<double>(t - w + 1) / std::max(1.0, static_cast<double>(p.total_num_steps - w)));
    ratio = std::max(0.0, p.cos_min_ratio +
                              (1.0 - p.cos_min_ratio) * (1.0 + std::cos(M_PI * progress)) / 2.0);
  }
  return {optimizer_lr * ratio, std::nullopt};
}

/// OneCycle: a triangle over S = first + second step sizes, then decay. The
/// stair counts are accepted but, as in DeepSpeed's code, do not change the lr.
ScheduledValues one_cycle(const OneCycleParams& p, int64_t t) {
  const int64_t total = p.cycle_first_step_size + p.cycle_second_step_size;
  ScheduledValues v;
  if (t < total) {
    const double ratio = static_cast<double>(p.cycle_first_step_size) / static_cast<double>(total);
    const double i = static_cast<double>(t + 1) / static_cast<double>(total);
    const double x = 1.0 + i - std::floor(1.0 + i);
    const double scale = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
    v.lr = p.cycle_min_lr + (p.cycle_max_lr - p.cycle_min_lr) * scale;
    if (p.cycle_momentum) v.beta1 = p.cycle_max_mom - (p.cycle_max_mom - p.cycle_min_mom) * scale;
    return v;
  }
  const double interval =
      p.decay_step_size > 0 ? static_cast<double>(t - total + 1) / p.decay_step_size : 0.0;
  v.lr = p.decay_lr_rate == 0.0 ? p.cycle_min_lr : p.cycle_min_lr / (1.0 + p.decay_lr_rate * interval);
  if (p.cycle_momentum) {
    v.beta1 = p.decay_mom_rate == 0.0 ? p.cycle_max_mom
                                      : p.cycle_max_mom * (1.0 + p.decay_mom_rate * interval);
  }
  return v;
}

ScheduledValues lr_range_test(const LRRangeTestParams& p, int64_t t) {
  double interval = static_cast<double>(t + 1) / static_cast<double>(p.step_size);
  if (p.staircase) interval = std::floor(interval);
  return {p.min_lr * (1.0 + p.step_rate * interval), std::nullopt};
}

}  // namespace

ScheduledValues schedule_at(const SchedulerParams& params, double optimizer_lr, int64_t t) {
  struct Visitor {
    double optimizer_lr;
    int64_t t;
    ScheduledValues operator()(const WarmupLRParams& p) const { return warmup_lr(p, optimizer_lr, t); }
    ScheduledValues operator()(const WarmupDecayLRParams& p) const { return warmup_decay_lr(p, t); }
    ScheduledValues operator()(const WarmupCosineLRParams& p) const {
      return warmup_cosine_lr(p, optimizer_lr, t);
    }
    ScheduledValues operator()(const OneCycleParams& p) const { return one_cycle(p, t); }
    ScheduledValues operator()(const LRRangeTestParams& p) const { return lr_range_test(p, t); }
  };
  return std::visit(Visitor{optimizer_lr, t}, params);
}

LrScheduler::LrScheduler(SchedulerParams params, double optimizer_lr)
    : params_(std::move(params)), optimizer_lr_(optimizer_lr) {
  last_batch_iteration_ = std::visit([](const auto& p) { return p.last_batch_iteration; }, params_);
}

}  // namespace zerotrain::optim
