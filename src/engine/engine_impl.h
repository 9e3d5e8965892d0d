#pragma once
// What an Engine holds, in parts with one job each: the user's model
// (ModelAccess), the two communication channels, the ZeRO core, where
// training is (TrainingProgress) and the telemetry (phase timers, the step's
// communication window, the reporter). Built by initialize()
// (engine_init.cpp) and driven by engine.cpp. The checkpoint code is handed
// ckpt::EngineParts (src/checkpoint/engine_io.h) and the counters as a
// value; it never sees this class.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/activation_checkpointing.h>
#include <zerotrain/engine.h>

#include "engine/model_access.h"
#include "engine/progress.h"
#include "monitor/reporter.h"
#include "zero/sharded_model.h"

#include <c10/core/Device.h>

#include <chrono>
#include <memory>
#include <string>

namespace zerotrain::detail {

/// Gradients are reduced on `reduce` (the communicator initialize() was
/// given or created) and parameters gathered on `gather`, a channel of it:
/// Note [Gathers and reductions travel on separate channels].
struct Channels {
  std::shared_ptr<Communicator> reduce;
  std::shared_ptr<Communicator> gather;
  /// Both channels' accounting, added up.
  CommStats stats() const;
};

/// Phase timers and the window of collectives reported as the last step's.
class Telemetry {
 public:
  Telemetry(bool sync_timers, c10::Device device) : sync_timers_(sync_timers), device_(device) {}
  void record_phase(Phase phase, std::chrono::steady_clock::time_point start);
  const PhaseTimes& times() const noexcept { return times_; }
  /// The collectives since the previous boundary become the last step's.
  void close_step_window(const CommStats& now);
  /// Starts the next window at `now` (collectives outside steps are not counted).
  void rebase(const CommStats& now) { at_boundary_ = now; }
  const CommStats& last_step() const noexcept { return last_step_; }

 private:
  bool sync_timers_;  // wall_clock_breakdown on a GPU: each phase ends with a device synchronize
  c10::Device device_;
  PhaseTimes times_;
  CommStats at_boundary_;
  CommStats last_step_;
};

class EngineImpl {
 public:
  EngineImpl(Config config, std::unique_ptr<ModelAccess> model, Channels channels)
      : config(std::move(config)), model(std::move(model)), channels(std::move(channels)), progress(this->config) {}

  /// Hands the step's facts to the reporter; its collectives stay out of the step's comm stats.
  void report_step(const std::string& overflow_message);
  /// Applies a step's overflow decision still on the device, printing the
  /// loss scaler's message (Note [The overflow decision is read a step late]).
  void resolve_pending_step();
  std::vector<double> lr() const;

  Config config;
  OptimizerConfig optimizer;
  std::unique_ptr<ModelAccess> model;
  Channels channels;
  /// Shared with the zerotrain::Unit wrappers, which hold it weakly.
  std::shared_ptr<zero::ShardedModel> core;
  TrainingProgress progress;
  std::unique_ptr<Telemetry> telemetry;
  std::unique_ptr<monitor::Reporter> reporter;
  int64_t frozen_param_bytes = 0;
  int no_sync_depth = 0;
  /// activation_checkpointing.profile: the recomputed layers' times; null when off.
  std::shared_ptr<checkpointing::CheckpointProfile> checkpoint_profile;
};

}  // namespace zerotrain::detail
