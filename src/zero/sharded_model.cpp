// See Note [The four triggers] in sharded_model.h.

#include "zero/sharded_model.h"

#include <ATen/core/grad_mode.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <numeric>

namespace zerotrain::zero {

namespace {

int64_t alignment_elements(at::ScalarType dtype) {
  // 16 bytes: vector loads in the kernels and NCCL's preferred alignment.
  return std::max<int64_t>(1, 16 / static_cast<int64_t>(c10::elementSize(dtype)));
}

// Each unit's parameters in buffer order: by optimizer group, then in
// registration order (Note [Optimizer groups run over units]).
std::vector<std::vector<int>> buffer_orders(const ModelSpec& spec) {
  const std::vector<int> group_of = spec.group_of_param();
  std::vector<std::vector<int>> out;
  for (const UnitSpec& u : spec.units) {
    std::vector<int> ps = u.params;
    std::sort(ps.begin(), ps.end(), [&](int a, int b) {
      const int ga = group_of[static_cast<size_t>(a)], gb = group_of[static_cast<size_t>(b)];
      return ga != gb ? ga < gb : a < b;
    });
    out.push_back(std::move(ps));
  }
  return out;
}

std::vector<int64_t> numels_of(const ModelSpec& spec) {
  std::vector<int64_t> n;
  for (const NamedParameter& p : spec.params) n.push_back(p.tensor.numel());
  return n;
}

}  // namespace

ShardedModel::ShardedModel(ModelSpec spec, const CorePlan& plan, Communicator& reduce_comm,
                           Communicator& gather_comm, Observer observer)
    : spec_((spec.validate(), std::move(spec))),
      policy_(plan.policy),
      allgather_bucket_numel_(plan.allgather_bucket_numel),
      reduce_comm_(reduce_comm),
      gather_comm_(gather_comm),
      observer_(std::move(observer)),
      layout_(ModelLayout::build(buffer_orders(spec_), numels_of(spec_), reduce_comm.world_size(),
                                 plan.policy.optimizer_states,
                                 alignment_elements(spec_.params.front().tensor.scalar_type()))) {
  TORCH_CHECK(gather_comm_.world_size() == reduce_comm_.world_size() && gather_comm_.rank() == reduce_comm_.rank(),
              "zerotrain: the gather and reduce communicators must span the same ranks");
  for (const NamedParameter& p : spec_.params) names_.push_back(p.name);
  units_.reserve(spec_.units.size());
  for (size_t u = 0; u < spec_.units.size(); ++u) {
    std::vector<at::Tensor> params;
    for (int p : layout_.unit(static_cast<int>(u)).params) params.push_back(spec_.params[static_cast<size_t>(p)].tensor);
    units_.emplace_back(static_cast<int>(u), display_name(spec_.units[u]), layout_.unit(static_cast<int>(u)),
                        std::move(params), /*full_grads=*/!policy_.gradients);
  }
  // Every rank starts from rank 0's parameters, as DeepSpeed's engine does.
  for (FlatUnit& u : units_) reduce_comm_.broadcast(u.flat_params(), 0).wait();

  owned_ = std::make_unique<OwnedState>(layout_, units_, reduce_comm_.rank(), policy_.gradients);
  for (const OptimizerGroupSpec& g : spec_.groups)
    groups_.push_back({g.lr, g.weight_decay, g.params, layout_.owned_runs(g.params, reduce_comm_.rank())});

  ReducePlan reduce = plan.reduce;
  reduce.shard_gradients = policy_.gradients;
  reduce.shard_owned = policy_.optimizer_states;
  std::tie(reduce.pre_scale, reduce.post_scale) =
      ReducePlan::averaging(reduce_comm_.world_size(), policy_.optimizer_states && reduce.reduce_scatter,
                            plan.prescale_gradients, plan.predivide_factor);
  reducer_ = std::make_unique<GradReducer>(
      units_, layout_, *owned_, names_, reduce_comm_, reduce,
      [this](EngineEvent::Kind kind, int unit, int param, int in_flight) { emit(kind, unit, param, in_flight); },
      [this](int unit) { record_after_backward(unit); });
}

ShardedModel::~ShardedModel() = default;

void ShardedModel::emit(EngineEvent::Kind kind, int unit, int param, int in_flight) const {
  if (observer_) observer_(EngineEvent{kind, unit, param, in_flight});
}

// ---- Triggers ----------------------------------------------------------------

void ShardedModel::before_forward(int unit) {
  TORCH_CHECK(unit >= 0 && unit < static_cast<int>(units_.size()), "zerotrain: unit index ", unit,
              " is outside [0, ", units_.size(), ")");
  units_[static_cast<size_t>(unit)].check_readable("ran its forward");
  if (at::GradMode::is_enabled()) {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    if (std::find(this_forward_.begin(), this_forward_.end(), unit) == this_forward_.end())
      this_forward_.push_back(unit);
  }
  emit(EngineEvent::Kind::kBeforeForward, unit, -1, 0);
}

void ShardedModel::after_forward(int unit) { emit(EngineEvent::Kind::kAfterForward, unit, -1, 0); }

void ShardedModel::before_backward(int unit) {
  units_.at(static_cast<size_t>(unit)).check_readable("reached its backward");
  emit(EngineEvent::Kind::kBeforeBackward, unit, -1, 0);
}

void ShardedModel::record_after_backward(int unit) {
  {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    this_backward_.push_back(unit);
  }
  emit(EngineEvent::Kind::kAfterBackward, unit, -1, 0);
}

ExecutionTrace ShardedModel::trace() const {
  std::lock_guard<std::mutex> lock(trace_mutex_);
  return trace_;
}

// ---- Backward ----------------------------------------------------------------

void ShardedModel::begin_backward(bool reduce, bool boundary) {
  {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    if (!this_forward_.empty()) {
      if (!forward_recorded_) {
        trace_.forward = this_forward_;
        forward_recorded_ = true;
      } else if (this_forward_ != trace_.forward) {
        ++trace_.forward_mismatches;
      }
    }
    this_forward_.clear();
    this_backward_.clear();
  }
  reducer_->begin_backward(reduce, boundary);
}

void ShardedModel::end_backward() {
  reducer_->end_backward();
  std::lock_guard<std::mutex> lock(trace_mutex_);
  if (!backward_recorded_) {
    trace_.backward = this_backward_;
    backward_recorded_ = true;
  }
}

// ---- Step --------------------------------------------------------------------

double ShardedModel::grad_norm_sq() { return global_grad_norm_sq(*owned_, layout_, reduce_comm_); }

void ShardedModel::update(OptimizerKind kind, const std::function<optim::StepHyperParams(int)>& hyper,
                          int64_t step, const optim::StepControl& control) {
  zero::update(*owned_, layout_, groups_, kind, hyper, step, control, reduce_comm_);
}

void ShardedModel::gather(const std::vector<int>& units) {
  if (!layout_.sharded()) return;
  gather_units(units_, units, *owned_, gather_comm_, allgather_bucket_numel_,
               [this](EngineEvent::Kind kind, int unit) { emit(kind, unit, -1, 0); });
}

void ShardedModel::gather_params() {
  std::vector<int> all(units_.size());
  std::iota(all.begin(), all.end(), 0);
  gather(all);
}

void ShardedModel::zero_grads() {
  for (FlatUnit& u : units_) u.zero_grads();
  owned_->zero_grad_shard();
  reducer_->mark_clean();
}

void ShardedModel::after_master_load() {
  owned_->copy_master_to_params();
  gather_params();
  zero_grads();
}

int64_t ShardedModel::param_bytes() const {
  int64_t b = 0;
  for (const FlatUnit& u : units_) b += u.param_bytes();
  return b;
}

int64_t ShardedModel::grad_bytes() const {
  int64_t b = owned_->grad_shard_bytes();
  for (const FlatUnit& u : units_) b += u.grad_bytes();
  return b;
}

}  // namespace zerotrain::zero
