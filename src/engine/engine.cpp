// The Engine's training calls: backward, step and the counters around them.
// See docs/architecture.md, "The engine", for the order of a step.

#include <zerotrain/engine.h>

#include "engine/engine_impl.h"

#include <ATen/record_function.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

namespace zerotrain {

using detail::EngineImpl;

Engine::Engine(std::unique_ptr<EngineImpl> state) : state_(std::move(state)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

at::Tensor Engine::backward(const at::Tensor& loss) {
  EngineImpl& s = *state_;
  TORCH_CHECK(loss.defined() && loss.numel() == 1, "zerotrain: backward() takes the scalar loss of one micro-batch");
  TORCH_CHECK(loss.requires_grad(),
              "zerotrain: the loss does not require grad (was the forward run under NoGradGuard?)");
  // One backward per micro step: a second would add a micro-batch the
  // accumulation window does not count (its gradients scaled by 1/GAS too few).
  // Inside no_sync() more are the point (DDP's pattern: accumulate locally,
  // then one backward outside the scope reduces), so those are not counted.
  const bool counted = s.no_sync_depth == 0;
  TORCH_CHECK(!counted || !s.progress.backward_done, "zerotrain: backward() called twice for micro step ",
              s.progress.counters.micro_steps, " without step() between; sum the losses and call backward() "
              "once per micro-batch (or accumulate inside no_sync())");
  RECORD_FUNCTION("zerotrain::backward", std::vector<c10::IValue>());
  const auto start = std::chrono::steady_clock::now();
  const bool boundary = s.progress.at_boundary();
  // Note [Overlap reduce-scatter with backward]: stage 2 reduces every
  // micro-batch; stages 0/1 only the boundary's, and never inside no_sync().
  const bool reduce = s.config.zero().sharding().gradients || (boundary && s.no_sync_depth == 0);
  s.core->begin_backward(reduce, boundary);
  const double factor = s.progress.scaler.scale() / static_cast<double>(s.progress.gas());
  at::Tensor scaled = factor == 1.0 ? loss : loss * factor;
  scaled.backward();
  const auto reduce_start = std::chrono::steady_clock::now();
  s.core->end_backward();
  if (counted) s.progress.backward_done = true;
  s.telemetry->record_phase(Phase::kReduce, reduce_start);
  s.telemetry->record_phase(Phase::kBackward, start);
  at::Tensor share = loss.detach() / static_cast<double>(s.progress.gas());
  s.reporter->add_loss(share);
  return share;
}

bool Engine::is_gradient_accumulation_boundary() const { return state_->progress.at_boundary(); }

void Engine::step() {
  EngineImpl& s = *state_;
  detail::TrainingProgress& p = s.progress;
  TORCH_CHECK(s.no_sync_depth == 0,
              "zerotrain: step() inside no_sync() would update with unreduced gradients; leave "
              "the no_sync() scope and run the boundary micro-batch's backward() first");
  TORCH_CHECK(p.backward_done, "zerotrain: step() for micro step ", p.counters.micro_steps,
              " without backward(); call backward() on every micro-batch before its step()");
  p.backward_done = false;
  const bool boundary = p.at_boundary();
  ++p.counters.micro_steps;
  p.step_applied = false;
  if (!boundary) return;

  RECORD_FUNCTION("zerotrain::step", std::vector<c10::IValue>());
  const auto start = std::chrono::steady_clock::now();
  TORCH_CHECK(s.core->grad_state() == zero::GradState::kReduced, "zerotrain: step() at the accumulation boundary (micro step ",
              p.counters.micro_steps, ") found the gradients ", zero::to_string(s.core->grad_state()),
              "; call backward() on every micro-batch before its step()");
  s.resolve_pending_step();  // the previous step's, before its counts set this update
  const double scale = p.scaler.scale();
  // Note [The step's scalars stay on the device]: the norm, the clipping
  // coefficient and the kernels' control come from the device.
  const bool check_overflow = s.config.fp16().enabled || (s.config.bf16().enabled && s.config.bf16().check_grad_overflow);
  const precision::StepScalars scalars =
      precision::step_scalars(s.core->grad_norm_sq(), scale, s.config.gradients().clipping, check_overflow);
  p.grad_norm = scalars.grad_norm;
  // Note [The overflow decision is read a step late] (progress.cpp): only a
  // dynamic loss scale needs the decision before the next backward.
  const bool decide_now = !check_overflow || p.scaler.is_dynamic();
  const bool overflow = check_overflow && decide_now && scalars.grad_norm.read() < 0;  // -1: inf or nan

  if (!overflow) {
    // Undecided, the update runs and the kernels obey the device flag.
    const auto& groups = s.core->groups();
    s.core->update(
        s.optimizer.kind,
        [&](int g) {
          const zero::OptimizerGroup& G = groups[static_cast<size_t>(g)];
          return p.hyper_params(G.lr, G.weight_decay);
        },
        p.counters.applied_steps + 1, scalars.control);
    s.telemetry->record_phase(Phase::kStep, start);
    const auto gather_start = std::chrono::steady_clock::now();
    s.core->gather_params();
    s.telemetry->record_phase(Phase::kAllGather, gather_start);
  } else {
    s.telemetry->record_phase(Phase::kStep, start);
  }
  std::string message;
  if (decide_now) {
    message = p.account(overflow, p.counters.global_steps + 1, /*latest=*/true);
  } else {
    p.pending = detail::TrainingProgress::PendingStep{scalars.grad_norm, p.counters.global_steps + 1,
                                                      p.counters.micro_steps};
  }
  s.core->zero_grads();
  ++p.counters.global_steps;
  s.telemetry->close_step_window(s.channels.stats());
  s.report_step(message);
}

void Engine::zero_grad() {
  state_->core->zero_grads();
  state_->progress.backward_done = false;  // the gradients are gone: this micro step's backward may run again
}

NoSyncGuard Engine::no_sync() {
  TORCH_CHECK(!state_->config.zero().sharding().gradients, "zerotrain: no_sync() is for ZeRO stages 0 and 1; stage ",
              state_->config.zero().stage, " shards gradients and must reduce every backward");
  return NoSyncGuard(state_.get());
}

NoSyncGuard::NoSyncGuard(EngineImpl* state) : state_(state) { ++state_->no_sync_depth; }
NoSyncGuard::NoSyncGuard(NoSyncGuard&& o) noexcept : state_(o.state_) { o.state_ = nullptr; }
NoSyncGuard::~NoSyncGuard() {
  if (state_ != nullptr) --state_->no_sync_depth;
}

void Engine::train(bool on) { state_->model->train(on); }
std::shared_ptr<torch::nn::Module> Engine::module() const { return state_->model->module(); }
const Config& Engine::config() const { return state_->config; }
int64_t Engine::global_steps() const { return state_->progress.counters.global_steps; }
int64_t Engine::micro_steps() const { return state_->progress.counters.micro_steps; }
int64_t Engine::skipped_steps() const {
  state_->resolve_pending_step();
  return state_->progress.counters.skipped_steps;
}
bool Engine::was_step_applied() const {
  state_->resolve_pending_step();
  return state_->progress.step_applied;
}
double Engine::loss_scale() const { return state_->progress.scaler.scale(); }
std::optional<double> Engine::global_grad_norm() const {
  const precision::DeviceScalar& norm = state_->progress.grad_norm;
  return norm.defined() ? std::optional<double>(norm.read()) : std::nullopt;  // the user asks: one read
}
void Engine::write_events(const std::vector<MonitorEvent>& events) { state_->reporter->write_events(events); }
void Engine::print_line(const std::string& line) { state_->reporter->print_line(line); }
int Engine::rank() const { return state_->channels.reduce->rank(); }
int Engine::world_size() const { return state_->channels.reduce->world_size(); }
Communicator& Engine::communicator() const { return *state_->channels.reduce; }
std::vector<double> Engine::lr() const {
  state_->resolve_pending_step();
  return state_->lr();
}
ExecutionTrace Engine::execution_trace() const { return state_->core->trace(); }
std::vector<int> Engine::reduce_order() const { return state_->core->reduce_order(); }

std::shared_ptr<UnitTriggers> Engine::unit_triggers() const { return state_->core; }

std::vector<UnitInfo> Engine::units() const {
  const zero::ShardedModel& core = *state_->core;
  std::vector<UnitInfo> out;
  for (const zero::FlatUnit& u : core.units()) {
    UnitInfo info;
    info.name = u.name();
    info.module_path = core.unit_path(u.index());
    for (int p : u.layout().params) info.params.push_back(core.param_names()[static_cast<size_t>(p)]);
    info.numel = u.layout().flat.param_numel();
    info.padded_numel = u.layout().flat.padded_numel();
    info.has_triggers = core.unit_has_triggers(u.index());
    out.push_back(std::move(info));
  }
  return out;
}

namespace detail {

std::vector<double> EngineImpl::lr() const {
  std::vector<double> out;
  for (const zero::OptimizerGroup& g : core->groups()) out.push_back(progress.hyper_params(g.lr, g.weight_decay).lr);
  return out;
}

void EngineImpl::resolve_pending_step() {
  const std::string message = progress.resolve();
  if (!message.empty()) reporter->print_line("[zerotrain] " + message);
}

void EngineImpl::report_step(const std::string& overflow_message) {
  // A report that shows the counts reads a pending decision; others leave it.
  if (reporter->shows_counts(progress.counters.global_steps)) resolve_pending_step();
  monitor::StepFacts f;
  f.step = progress.counters.global_steps;
  f.skipped = progress.counters.skipped_steps;
  f.lr = lr();
  f.loss_scale = progress.scaler.scale();
  f.grad_norm = progress.grad_norm;
  f.times = telemetry->times();
  f.overflow_message = overflow_message;
  reporter->after_step(f, *channels.reduce);
  telemetry->rebase(channels.stats());  // the report's all-gather is not the next step's traffic
}

}  // namespace detail

}  // namespace zerotrain
