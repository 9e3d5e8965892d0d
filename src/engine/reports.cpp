// What an Engine reports about itself: memory by role, collectives per
// optimizer step, phase timers.

#include <zerotrain/engine.h>

#include "engine/engine_impl.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <iomanip>
#include <sstream>

namespace zerotrain {

using detail::EngineImpl;

const char* to_string(Phase phase) {
  switch (phase) {
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kReduce: return "reduce";
    case Phase::kStep: return "step";
    case Phase::kAllGather: return "all_gather";
  }
  return "?";
}

const char* to_string(EngineEvent::Kind kind) {
  switch (kind) {
    case EngineEvent::Kind::kBeforeForward: return "before_forward";
    case EngineEvent::Kind::kAfterForward: return "after_forward";
    case EngineEvent::Kind::kBeforeBackward: return "before_backward";
    case EngineEvent::Kind::kGradReady: return "grad_ready";
    case EngineEvent::Kind::kAfterBackward: return "after_backward";
    case EngineEvent::Kind::kReduceLaunched: return "reduce_launched";
    case EngineEvent::Kind::kReduceRetired: return "reduce_retired";
    case EngineEvent::Kind::kBackwardDone: return "backward_done";
    case EngineEvent::Kind::kGatherLaunched: return "gather_launched";
    case EngineEvent::Kind::kGatherDone: return "gather_done";
    case EngineEvent::Kind::kReleased: return "released";
  }
  return "?";
}

std::string PhaseTimes::to_string() const {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2);
  for (int i = 0; i < kNumPhases; ++i) {
    if (count[static_cast<size_t>(i)] == 0) continue;
    s << "  " << std::left << std::setw(11) << zerotrain::to_string(static_cast<Phase>(i))
      << std::right << std::setw(12) << total_ms[static_cast<size_t>(i)] << " ms in "
      << count[static_cast<size_t>(i)] << " calls\n";
  }
  return s.str();
}

std::string MemoryReport::to_string() const {
  std::ostringstream s;
  const auto line = [&s](const char* what, int64_t bytes) {
    s << "  " << std::left << std::setw(22) << what << std::right << std::setw(16) << bytes << " B\n";
  };
  line("parameters", parameters);
  line("gradients", gradients);
  line("master weights", master_weights);
  line("optimizer states", optimizer_states);
  line("communication buffers", communication_buffers);
  if (offload_buffers > 0) line("offload buffers", offload_buffers);
  line("total", total());
  if (host > 0) line("  of it in host memory", host);
  if (parameter_shard > 0) {
    s << "  of the parameters (stage 3):\n";
    line("  shard", parameter_shard);
    line("  gathered now", gathered_parameters);
    line("  gathered at peak", peak_gathered_parameters);
  }
  return s.str();
}

MemoryReport Engine::memory_report() const {
  const EngineImpl& s = *state_;
  const zero::ShardedModel& core = *s.core;
  MemoryReport r;
  r.parameters = s.frozen_param_bytes + core.param_bytes();
  r.gradients = core.grad_bytes();
  r.master_weights = core.owned().master_bytes();
  r.optimizer_states = core.owned().moment_bytes();
  r.communication_buffers = core.buffer_bytes();
  r.offload_buffers = core.owned().offload_buffer_bytes();
  r.host = core.owned().host_bytes();
  r.parameter_shard = core.owned().param_shard_bytes();
  r.gathered_parameters = core.param_bytes() - r.parameter_shard;
  r.peak_gathered_parameters = core.peak_gathered_bytes();
  return r;
}

std::optional<checkpointing::CheckpointProfile::Totals> Engine::checkpoint_profile() const {
  if (!state_->checkpoint_profile) return std::nullopt;
  return state_->checkpoint_profile->totals();
}

CommStats Engine::comm_report() const { return state_->telemetry->last_step(); }
PhaseTimes Engine::timers() const { return state_->telemetry->times(); }
PhaseTimer Engine::time(Phase phase) { return PhaseTimer(state_.get(), phase); }

PhaseTimer::PhaseTimer(detail::EngineImpl* state, Phase phase)
    : state_(state), phase_(phase), start_(std::chrono::steady_clock::now()) {}
PhaseTimer::PhaseTimer(PhaseTimer&& o) noexcept : state_(o.state_), phase_(o.phase_), start_(o.start_) {
  o.state_ = nullptr;
}
PhaseTimer::~PhaseTimer() {
  if (state_ != nullptr) state_->telemetry->record_phase(phase_, start_);
}

namespace detail {

CommStats Channels::stats() const {
  CommStats out = reduce->stats();
  const CommStats g = gather->stats();
  for (size_t i = 0; i < out.per_collective.size(); ++i) {
    CollectiveStats& d = out.per_collective[i];
    const CollectiveStats& e = g.per_collective[i];
    d.calls += e.calls;
    d.payload_bytes += e.payload_bytes;
    d.wire_bytes += e.wire_bytes;
    if (d.algorithm.empty()) d.algorithm = e.algorithm;
  }
  return out;
}

void Telemetry::record_phase(Phase phase, std::chrono::steady_clock::time_point start) {
  if (sync_timers_) {
    // wall_clock_breakdown asks for device time, as DeepSpeed's timers do.
    c10::impl::getDeviceGuardImpl(device_.type())->synchronizeDevice(device_.index());
  }
  const auto i = static_cast<size_t>(phase);
  times_.total_ms[i] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  times_.count[i] += 1;
}

void Telemetry::close_step_window(const CommStats& now) {
  last_step_ = now;
  for (size_t i = 0; i < now.per_collective.size(); ++i) {
    CollectiveStats& d = last_step_.per_collective[i];
    const CollectiveStats& before = at_boundary_.per_collective[i];
    d.calls -= before.calls;
    d.payload_bytes -= before.payload_bytes;
    d.wire_bytes -= before.wire_bytes;
  }
  at_boundary_ = now;
}

}  // namespace detail

}  // namespace zerotrain
