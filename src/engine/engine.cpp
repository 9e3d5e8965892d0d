// The Engine's training calls: backward, step and the counters around them.
// See docs/architecture.md, "The engine", for the order of a step.

#include <zerotrain/engine.h>

#include "engine/engine_state.h"
#include "zero/shard_optimizer.h"

#include <ATen/record_function.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>

namespace zerotrain {

using detail::EngineState;

Engine::Engine(std::unique_ptr<EngineState> state) : state_(std::move(state)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

at::Tensor Engine::backward(const at::Tensor& loss) {
  EngineState& s = *state_;
  TORCH_CHECK(loss.defined() && loss.numel() == 1,
              "zerotrain: backward() takes the scalar loss of one micro-batch");
  TORCH_CHECK(loss.requires_grad(),
              "zerotrain: the loss does not require grad (was the forward run under NoGradGuard?)");
  RECORD_FUNCTION("zerotrain::backward", std::vector<c10::IValue>());
  const auto start = std::chrono::steady_clock::now();
  const bool boundary = s.at_boundary();
  // Note [Overlap reduce-scatter with backward]: stage 2 reduces every
  // micro-batch; stages 0/1 only the boundary's, and never inside no_sync().
  const bool grads_sharded = s.config.zero().sharding().gradients;
  const bool reduce = grads_sharded || (boundary && s.no_sync_depth == 0);
  s.reducer->begin_backward(reduce, boundary);
  const double factor = s.scaler.scale() / static_cast<double>(s.gas());
  at::Tensor scaled = factor == 1.0 ? loss : loss * factor;
  scaled.backward();
  const auto reduce_start = std::chrono::steady_clock::now();
  s.reducer->end_backward();
  s.record_phase(Phase::kReduce, reduce_start);
  s.record_phase(Phase::kBackward, start);
  at::Tensor share = loss.detach() / static_cast<double>(s.gas());
  s.reporter->add_loss(share);
  return share;
}

bool Engine::is_gradient_accumulation_boundary() const { return state_->at_boundary(); }

void Engine::step() {
  EngineState& s = *state_;
  TORCH_CHECK(s.no_sync_depth == 0,
              "zerotrain: step() inside no_sync() would update with unreduced gradients; leave "
              "the no_sync() scope and run the boundary micro-batch's backward() first");
  const bool boundary = s.at_boundary();
  ++s.micro_steps;
  s.step_applied = false;
  if (!boundary) return;

  RECORD_FUNCTION("zerotrain::step", std::vector<c10::IValue>());
  const auto start = std::chrono::steady_clock::now();
  TORCH_CHECK(s.reducer->state() == zero::GradState::kReduced,
              "zerotrain: step() at the accumulation boundary (micro step ", s.micro_steps,
              ") found the gradients ", zero::to_string(s.reducer->state()),
              "; call backward() on every micro-batch before its step()");
  const double scale = s.scaler.scale();
  const double norm_sq = zero::global_grad_norm_sq(s.groups, *s.comm);
  const bool finite = std::isfinite(norm_sq);
  const bool overflow = s.check_overflow && !finite;
  s.grad_norm = finite ? std::sqrt(norm_sq) / scale : -1.0;  // DeepSpeed reports -1 for inf/nan
  const int64_t step_number = s.global_steps + 1;
  const precision::LossScaleUpdate scale_update = s.scaler.update(overflow, step_number);

  if (!scale_update.skip_step) {
    // DeepSpeed: clip = max(1, (norm / scale + 1e-6) / max_norm), grad *= 1 / (clip * scale).
    const double max_norm = s.config.gradients().clipping;
    const double clip = max_norm > 0 ? std::max(1.0, (*s.grad_norm + 1e-6) / max_norm) : 1.0;
    const optim::StepControl control =
        optim::StepControl::make(s.groups.front().flat_params().device(), 1.0 / (scale * clip));
    for (zero::FlatParamGroup& g : s.groups)
      zero::step_group(g, s.optimizer.kind, s.hyper_params(g), s.applied_steps + 1, control, *s.comm);
    s.record_phase(Phase::kStep, start);
    const auto gather_start = std::chrono::steady_clock::now();
    zero::gather_params(s.groups, *s.comm, s.config.zero().allgather_bucket_size);
    s.record_phase(Phase::kAllGather, gather_start);
    if (s.scheduler) s.scheduler->step();  // Note [Schedules follow DeepSpeed's step convention]
    ++s.applied_steps;
    s.step_applied = true;
  } else {
    ++s.skipped_steps;
    s.record_phase(Phase::kStep, start);
  }
  for (zero::FlatParamGroup& g : s.groups) g.zero_grads();
  s.reducer->mark_clean();
  ++s.global_steps;
  s.close_step_window();
  s.report_step(scale_update.message);
}

void Engine::zero_grad() {
  EngineState& s = *state_;
  for (zero::FlatParamGroup& g : s.groups) g.zero_grads();
  s.reducer->mark_clean();
}

NoSyncGuard Engine::no_sync() {
  TORCH_CHECK(!state_->config.zero().sharding().gradients,
              "zerotrain: no_sync() is for ZeRO stages 0 and 1; stage ",
              state_->config.zero().stage, " shards gradients and must reduce every backward");
  return NoSyncGuard(state_.get());
}

NoSyncGuard::NoSyncGuard(detail::EngineState* state) : state_(state) { ++state_->no_sync_depth; }
NoSyncGuard::NoSyncGuard(NoSyncGuard&& o) noexcept : state_(o.state_) { o.state_ = nullptr; }
NoSyncGuard::~NoSyncGuard() {
  if (state_ != nullptr) --state_->no_sync_depth;
}

void Engine::train(bool on) { state_->module->train(on); }
std::shared_ptr<torch::nn::Module> Engine::module() const { return state_->module; }
const Config& Engine::config() const { return state_->config; }
int64_t Engine::global_steps() const { return state_->global_steps; }
int64_t Engine::micro_steps() const { return state_->micro_steps; }
int64_t Engine::skipped_steps() const { return state_->skipped_steps; }
bool Engine::was_step_applied() const { return state_->step_applied; }
double Engine::loss_scale() const { return state_->scaler.scale(); }
std::optional<double> Engine::global_grad_norm() const { return state_->grad_norm; }
void Engine::write_events(const std::vector<MonitorEvent>& events) { state_->reporter->write_events(events); }
void Engine::print_line(const std::string& line) { state_->reporter->print_line(line); }
int Engine::rank() const { return state_->comm->rank(); }
int Engine::world_size() const { return state_->comm->world_size(); }
Communicator& Engine::communicator() const { return *state_->comm; }

std::vector<double> Engine::lr() const {
  std::vector<double> out;
  for (const auto& g : state_->groups) out.push_back(state_->hyper_params(g).lr);
  return out;
}

namespace detail {

optim::StepHyperParams EngineState::hyper_params(const zero::FlatParamGroup& g) const {
  optim::StepHyperParams h = optim::StepHyperParams::from_config(optimizer);
  h.lr = g.lr();
  h.weight_decay = g.weight_decay();
  if (scheduler) {
    const optim::ScheduledValues v =
        optim::schedule_at(scheduler->params(), g.lr(), scheduler->last_batch_iteration());
    h.lr = v.lr;
    if (v.beta1) {
      h.beta1 = *v.beta1;
      h.beta2 = optim::ScheduledValues::kOneCycleBeta2;
    }
  }
  return h;
}

void EngineState::report_step(const std::string& overflow_message) {
  monitor::StepFacts f;
  f.step = global_steps;
  f.skipped = skipped_steps;
  for (const auto& g : groups) f.lr.push_back(hyper_params(g).lr);
  f.loss_scale = scaler.scale();
  f.grad_norm = grad_norm;
  f.times = times;
  f.overflow_message = overflow_message;
  reporter->after_step(f, *comm);
  stats_at_boundary = comm->stats();  // the report's all-gather is not the next step's traffic
}

}  // namespace detail

}  // namespace zerotrain
