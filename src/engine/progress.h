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

#include <cstdint>
#include <optional>

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

  StepCounters counters;
  precision::LossScaler scaler;
  std::optional<optim::LrScheduler> scheduler;
  bool step_applied = false;
  /// backward() ran for the current micro step (one per step(); Engine::backward).
  bool backward_done = false;
  std::optional<double> grad_norm;

 private:
  OptimizerConfig optimizer_;
  int64_t gas_;
};

}  // namespace zerotrain::detail
