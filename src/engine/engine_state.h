#pragma once
// Everything an Engine holds. Built by initialize() (engine_init.cpp), driven
// by engine.cpp, read by reports.cpp. The policy (what is sharded, how
// gradients travel) was decided once from the config; nothing here re-reads it.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/engine.h>

#include "monitor/reporter.h"
#include "optim/lr_schedule.h"
#include "precision/loss_scaler.h"
#include "zero/flat_group.h"
#include "zero/grad_reducer.h"

#include <c10/core/Device.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zerotrain::detail {

struct EngineState {
  std::shared_ptr<torch::nn::Module> module;
  Config config;
  std::shared_ptr<Communicator> comm;
  OptimizerConfig optimizer;
  c10::Device device{c10::kCPU};

  // Before `reducer`: the reducer's hooks refer to the groups.
  std::vector<zero::FlatParamGroup> groups;
  std::unique_ptr<zero::GradReducer> reducer;
  precision::LossScaler scaler;
  std::optional<optim::LrScheduler> scheduler;
  bool check_overflow = false;  // fp16, or bf16 with check_grad_overflow
  int64_t frozen_param_bytes = 0;

  int64_t micro_steps = 0;
  int64_t global_steps = 0;
  int64_t skipped_steps = 0;
  int64_t applied_steps = 0;
  bool step_applied = false;
  std::optional<double> grad_norm;
  int no_sync_depth = 0;

  CommStats stats_at_boundary;  // the communicator's totals after the last boundary
  CommStats last_step_stats;
  PhaseTimes times;
  bool sync_timers = false;  // wall_clock_breakdown on a GPU
  std::unique_ptr<monitor::Reporter> reporter;

  EngineState(Config c, precision::LossScaler s) : config(std::move(c)), scaler(std::move(s)) {}

  int64_t gas() const { return config.batch().gradient_accumulation_steps; }
  bool at_boundary() const { return (micro_steps + 1) % gas() == 0; }
  /// The hyper-parameters of group `g` for the next update, schedule applied.
  optim::StepHyperParams hyper_params(const zero::FlatParamGroup& g) const;
  void record_phase(Phase phase, std::chrono::steady_clock::time_point start);
  /// Comm stats since the previous boundary become the last step's.
  void close_step_window();
  /// Hands the step's facts to the reporter; its collectives stay out of the step's comm stats.
  void report_step(const std::string& overflow_message);
};

}  // namespace zerotrain::detail
