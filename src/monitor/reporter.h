#pragma once
// The engine's reporting after each optimizer step: the steps_per_print line
// (with a small all-gather for the loss and per-rank memory), the
// wall_clock_breakdown split, the progress bar on a terminal, and the
// monitors' events. The engine hands it facts; it decides what to show.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/engine.h>
#include <zerotrain/monitor.h>

#include "monitor/monitors.h"
#include "precision/step_scalars.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace zerotrain::monitor {

/// Fixed for the life of an engine.
struct RunFacts {
  int rank = 0;
  int world_size = 1;
  c10::Device device{c10::kCPU};
  c10::ScalarType dtype = c10::kFloat;
  int64_t trainable_params = 0;
  int64_t train_batch_size = 1;    // samples per optimizer step, all ranks
  bool report_loss_scale = false;  // fp16
};

/// What one optimizer step left behind.
struct StepFacts {
  int64_t step = 0;  // global steps after this one
  int64_t skipped = 0;
  std::vector<double> lr;  // for the next step, per group
  double loss_scale = 1;
  /// Read only for a report or an event that shows it (it may live on a GPU).
  precision::DeviceScalar grad_norm;
  PhaseTimes times;  // cumulative
  std::string overflow_message;
};

class Reporter {
 public:
  Reporter(const LoggingConfig& logging, const ProgressOptions& progress, const RunFacts& facts);
  ~Reporter();
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  /// One micro-batch's loss / gradient_accumulation_steps, still on the
  /// device: it is read back only when a report needs it.
  void add_loss(const at::Tensor& loss);
  /// Whether after_step() of global step `step` shows the skipped count, the
  /// lr or the norm (a print step, or per-step monitors or bar on rank 0).
  bool shows_counts(int64_t step) const;
  /// After every optimizer step, on every rank. A collective on print steps.
  void after_step(const StepFacts& step, Communicator& comm);
  /// The step counter jumped (a checkpoint was loaded): rates restart.
  void restart();
  void write_events(const std::vector<MonitorEvent>& events) { monitors_.write(events); }
  /// Rank 0 prints `line` on stdout, above the bar when one is drawn, or
  /// hands it to ProgressOptions::sink.
  void print_line(const std::string& line);

 private:
  using Clock = std::chrono::steady_clock;
  bool is_print_step(int64_t step) const;
  void draw_bar(const StepFacts& step, std::optional<double> loss, Clock::time_point now);
  void print_interval(const StepFacts& step, Communicator& comm, Clock::time_point now);
  std::vector<MonitorEvent> step_events(const StepFacts& step, std::optional<double> loss,
                                        double step_s) const;

  LoggingConfig logging_;
  ProgressOptions progress_;
  RunFacts facts_;
  Monitors monitors_;
  bool bar_ = false;
  bool bar_drawn_ = false;
  double flops_per_sample_ = 0;
  double peak_flops_ = 0;

  at::Tensor window_loss_;    // this step's micro-batch losses, summed (device)
  at::Tensor interval_loss_;  // every step's loss since the last print (device)
  Clock::time_point last_step_time_, last_print_time_, run_start_, last_draw_;
  int64_t last_print_step_ = -1;  // -1: not yet known (set at the first step)
  int64_t steps_this_run_ = 0;
  std::optional<double> ema_step_s_;
  PhaseTimes times_at_print_, times_at_step_;
};

}  // namespace zerotrain::monitor
