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

std::string TrainingProgress::account(bool overflow, int64_t step, bool latest) {
  const precision::LossScaleUpdate u = scaler.update(overflow, step);
  if (latest) step_applied = !u.skip_step;  // was_step_applied() is of the last step() call
  if (u.skip_step) {
    ++counters.skipped_steps;
  } else {
    if (scheduler) scheduler->step();  // Note [Schedules follow DeepSpeed's step convention]
    ++counters.applied_steps;
  }
  return u.message;
}

// Note [The overflow decision is read a step late]
// With a static loss scale (bf16, whose check_grad_overflow is on by default,
// or a fixed fp16 scale) nothing the next forward and backward do depends on
// whether this step overflowed: the update already obeys the overflow flag on
// the device (Note [Loss scaling stays on the device]). What does depend on it
// is host bookkeeping: the skipped-step count, Adam's step count and the
// schedule, which set the *next* update's bias correction and lr. So the step
// leaves its decision pending and the host reads it at the next boundary,
// before computing those, or earlier when someone asks (skipped_steps(),
// was_step_applied(), lr(), a report that shows them, save_checkpoint). By
// then the GPU is normally a whole forward and backward past the norm, and the
// read is of pinned memory behind an event (precision::DeviceScalar): the host
// never waits for the step it is issuing. Every count is what the eager rule
// gives, one step later. A dynamic fp16 scale is decided at once: the next
// backward multiplies the loss by the scale that decision sets.
std::string TrainingProgress::resolve() {
  if (!pending) return "";
  const PendingStep p = std::move(*pending);
  pending.reset();
  return account(p.grad_norm.read() < 0, p.step, /*latest=*/counters.micro_steps == p.micro_steps);
}

ckpt::EngineCounters TrainingProgress::save() const {
  TORCH_INTERNAL_ASSERT(!pending, "the counters are saved with a step's decision still pending");
  ckpt::EngineCounters c;
  c.global_steps = counters.global_steps;
  c.micro_steps = counters.micro_steps;
  c.skipped_steps = counters.skipped_steps;
  c.optimizer_steps = counters.applied_steps;
  c.loss_scaler = scaler.state();
  if (scheduler) c.scheduler_last_batch_iteration = scheduler->last_batch_iteration();
  return c;
}

// Note [A load with another accumulation setting]
// A checkpoint is saved between optimizer steps, so its micro-step count is a
// whole number of the saving run's windows. Restored verbatim under another
// gradient_accumulation_steps it would not be a whole number of the new
// windows: the first window after the load would be short or long, and every
// later save would be refused as "inside an accumulation window". So when the
// setting changed (elastic training changes it with the world size), the
// micro-step count restarts at global_steps x the new setting: the next
// micro-batch opens a full window of the new size. Everything else (steps,
// the schedule, the moments) continues; train_batch_size follows the config.
void TrainingProgress::restore(const ckpt::EngineCounters& saved, std::optional<int64_t> saved_gas,
                               at::ScalarType saved_dtype, bool with_optimizer_steps, bool with_scheduler) {
  pending.reset();  // a decision of the steps the load replaces
  counters.global_steps = saved.global_steps;
  const bool same_windows = saved_gas ? *saved_gas == gas_ : saved.micro_steps % gas_ == 0;
  counters.micro_steps = same_windows ? saved.micro_steps : saved.global_steps * gas_;
  counters.skipped_steps = saved.skipped_steps;
  if (with_optimizer_steps) counters.applied_steps = saved.optimizer_steps;
  if (scaler.is_dynamic() && saved_dtype == at::kHalf) scaler.restore(saved.loss_scaler);
  if (with_scheduler && scheduler && saved.scheduler_last_batch_iteration)
    scheduler->set_last_batch_iteration(*saved.scheduler_last_batch_iteration);
}

}  // namespace zerotrain::detail
