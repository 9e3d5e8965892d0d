#pragma once
// Where training is: DeepSpeed's counters, the loss scaler and the LR
// schedule, and the hyper-parameters they give each optimizer group. The
// engine advances it once per micro-batch and per optimizer step; a
// checkpoint saves it as ckpt::EngineCounters and the engine restores it.

#include <zerotrain/config.h>

#include "checkpoint/manifest.h"
#include "optim/lr_schedule.h"
#include "optim/reference_step.h"
#include "precision/loss_scaler.h"
#include "precision/step_scalars.h"

#include <cstdint>
#include <optional>
#include <string>

namespace zerotrain::detail {

struct StepCounters {
  int64_t micro_steps = 0;    // every step() call
  int64_t global_steps = 0;   // accumulation boundaries, skipped or not
  int64_t skipped_steps = 0;  // boundaries whose update was skipped (overflow)
  int64_t applied_steps = 0;  // updates applied: Adam's bias-correction step
};

class TrainingProgress {
 public:
  explicit TrainingProgress(const Config& config);

  int64_t gas() const noexcept { return gas_; }
  /// Whether the current micro-batch is the last before an optimizer step.
  bool at_boundary() const { return (counters.micro_steps + 1) % gas_ == 0; }
  /// Between optimizer steps (not inside an accumulation window).
  bool between_steps() const { return counters.micro_steps % gas_ == 0; }
  /// A group's hyper-parameters for the next update: the optimizer's, the
  /// group's lr and weight decay, the schedule applied.
  optim::StepHyperParams hyper_params(double group_lr, double group_weight_decay) const;

  ckpt::EngineCounters save() const;
  /// What load_checkpoint restores; see LoadCheckpointOptions.
  /// Note [A load with another accumulation setting] (progress.cpp).
  void restore(const ckpt::EngineCounters& saved, std::optional<int64_t> saved_gas, at::ScalarType saved_dtype,
               bool with_optimizer_steps, bool with_scheduler);

  /// The bookkeeping of one optimizer step once its overflow decision is
  /// known: the loss scaler's update, then, for an applied step, the schedule
  /// and Adam's step count, or the skipped count. Returns the scaler's message.
  /// `latest`: the step is that of the last step() call (step_applied follows it).
  std::string account(bool overflow, int64_t step, bool latest);
  /// Note [The overflow decision is read a step late]: applies `pending`
  /// (reading its norm on the host) if there is one; its message or "".
  std::string resolve();

  /// A step whose update ran with its overflow flag on the device and whose
  /// counting waits for the host to read that decision.
  struct PendingStep {
    precision::DeviceScalar grad_norm;  // -1: overflow
    int64_t step = 0;                   // global step, for the message
    int64_t micro_steps = 0;            // counters.micro_steps after its step()
  };

  StepCounters counters;
  std::optional<PendingStep> pending;
  precision::LossScaler scaler;
  std::optional<optim::LrScheduler> scheduler;
  bool step_applied = false;
  /// backward() ran for the current micro step (one per step(); Engine::backward).
  bool backward_done = false;
  /// The last step's ||g|| (-1 for inf/nan), still on the device until read.
  precision::DeviceScalar grad_norm;

 private:
  OptimizerConfig optimizer_;
  int64_t gas_;
};

}  // namespace zerotrain::detail
