// See progress.h.

#include "engine/progress.h"

#include <c10/util/Exception.h>

namespace zerotrain::detail {

TrainingProgress::TrainingProgress(const Config& config)
    : scaler(precision::LossScaler::from_config(config.fp16())),
      optimizer_(*config.optimizer()),
      gas_(config.batch().gradient_accumulation_steps) {
  if (config.scheduler()) scheduler.emplace(*config.scheduler(), optimizer_.lr);
}

optim::StepHyperParams TrainingProgress::hyper_params(double group_lr, double group_weight_decay) const {
  optim::StepHyperParams h = optim::StepHyperParams::from_config(optimizer_);
  h.lr = group_lr;
  h.weight_decay = group_weight_decay;
  if (scheduler) {
    const optim::ScheduledValues v = optim::schedule_at(scheduler->params(), group_lr, scheduler->last_batch_iteration());
    h.lr = v.lr;
    if (v.beta1) {
      h.beta1 = *v.beta1;
      h.beta2 = optim::ScheduledValues::kOneCycleBeta2;
    }
  }
  return h;
}

ckpt::EngineCounters TrainingProgress::save() const {
  ckpt::EngineCounters c;
  c.global_steps = counters.global_steps;
  c.micro_steps = counters.micro_steps;
  c.skipped_steps = counters.skipped_steps;
  c.optimizer_steps = counters.applied_steps;
  c.loss_scaler = scaler.state();
  if (scheduler) c.scheduler_last_batch_iteration = scheduler->last_batch_iteration();
  return c;
}

void TrainingProgress::restore(const ckpt::EngineCounters& saved, at::ScalarType saved_dtype,
                               bool with_optimizer_steps, bool with_scheduler) {
  counters.global_steps = saved.global_steps;
  counters.micro_steps = saved.micro_steps;
  counters.skipped_steps = saved.skipped_steps;
  if (with_optimizer_steps) counters.applied_steps = saved.optimizer_steps;
  if (scaler.is_dynamic() && saved_dtype == at::kHalf) scaler.restore(saved.loss_scaler);
  if (with_scheduler && scheduler && saved.scheduler_last_batch_iteration)
    scheduler->set_last_batch_iteration(*saved.scheduler_last_batch_iteration);
}

}  // namespace zerotrain::detail
