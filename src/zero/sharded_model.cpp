// See Note [The four triggers] in sharded_model.h.

#include "zero/sharded_model.h"

#include "zero/forward_context.h"

#include "comm/gather_values.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <c10/core/GradMode.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <iostream>
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
      sub_group_numel_(plan.sub_group_numel),
      reduce_comm_(reduce_comm),
      gather_comm_(gather_comm),
      observer_(std::move(observer)),
      layout_(ModelLayout::build(buffer_orders(spec_), numels_of(spec_), reduce_comm.world_size(),
                                 plan.policy.optimizer_states,
                                 alignment_elements(spec_.params.front().tensor.scalar_type()))) {
  TORCH_CHECK(gather_comm_.world_size() == reduce_comm_.world_size() && gather_comm_.rank() == reduce_comm_.rank(),
              "zerotrain: the gather and reduce communicators must span the same ranks");
  for (const NamedParameter& p : spec_.params) names_.push_back(p.name);
  owned_ = std::make_unique<OwnedState>(layout_, units_, reduce_comm_.rank(), policy_.gradients, policy_.parameters,
                                        spec_.params.front().tensor.options().requires_grad(false), plan.offload);
  // One unit at a time: a model sharded at creation is never whole on a rank.
  units_.reserve(spec_.units.size());
  for (size_t u = 0; u < spec_.units.size(); ++u) {
    const size_t from_pieces = materialize_pieces(static_cast<int>(u));
    const bool sharded_at_creation = from_pieces > 0;
    std::vector<at::Tensor> params;
    for (int p : layout_.unit(static_cast<int>(u)).params) params.push_back(spec_.params[static_cast<size_t>(p)].tensor);
    units_.emplace_back(static_cast<int>(u), display_name(spec_.units[u]), layout_.unit(static_cast<int>(u)),
                        std::move(params), /*full_grads=*/!policy_.gradients);
    // Every rank starts from rank 0's parameters, as DeepSpeed's engine does
    // (pieces were cut from rank 0's values already).
    if (from_pieces < spec_.units[u].params.size()) reduce_comm_.broadcast(units_.back().flat_params(), 0).wait();
    owned_->take_values(static_cast<int>(u));
    // Note [A unit is released only once its triggers are seen] (gather_scheduler.h).
    if (sharded_at_creation && spec_.units[u].has_triggers) units_.back().release();
  }
  ever_entered_.assign(units_.size(), 0);
  if (policy_.parameters) {
    std::vector<bool> triggers;
    for (const UnitSpec& u : spec_.units) triggers.push_back(u.has_triggers);
    scheduler_ = std::make_unique<GatherScheduler>(units_, *owned_, gather_comm_, plan.gather, triggers,
                                                   [this](EngineEvent::Kind kind, int unit) { emit(kind, unit, -1, 0); });
  }
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

size_t ShardedModel::materialize_pieces(int u) {
  // Note [Sharded at creation] (src/engine/sharded_init.cpp): the unit's
  // parameters from every rank's pieces, just before its flat buffer takes them.
  size_t count = 0;
  c10::NoGradGuard no_grad;
  for (int p : spec_.units[static_cast<size_t>(u)].params) {
    NamedParameter& np = spec_.params[static_cast<size_t>(p)];
    if (!np.piece.defined()) continue;
    TORCH_INTERNAL_ASSERT(policy_.parameters, "parameter '", np.name, "' was sharded at creation below stage 3");
    const int world = reduce_comm_.world_size();
    const int64_t numel = np.tensor.numel();
    TORCH_CHECK(np.piece.numel() == piece_numel(numel, world) && np.piece.scalar_type() == np.tensor.scalar_type(),
                "zerotrain: parameter '", np.name, "' was sharded at creation for another world size or dtype");
    at::Tensor all = at::empty({np.piece.numel() * world}, np.piece.options());
    reduce_comm_.all_gather(all, np.piece).wait();
    np.tensor.set_data(all.narrow(0, 0, numel).view(np.tensor.sizes()));
    np.piece = at::Tensor();
    ++count;
  }
  return count;
}

void ShardedModel::emit(EngineEvent::Kind kind, int unit, int param, int in_flight) const {
  if (observer_) observer_(EngineEvent{kind, unit, param, in_flight});
}

// ---- Triggers ----------------------------------------------------------------

void ShardedModel::before_forward(int unit) {
  TORCH_CHECK(unit >= 0 && unit < static_cast<int>(units_.size()), "zerotrain: unit index ", unit,
              " is outside [0, ", units_.size(), ")");
  // Note [Forwards inside activation checkpointing] (forward_context.h).
  const ForwardKind kind = current_forward_kind();
  if (kind == ForwardKind::kRecompute) return before_backward(unit);
  if (scheduler_) scheduler_->need(unit, Pass::kForward);
  units_[static_cast<size_t>(unit)].check_readable("ran its forward");
  ever_entered_[static_cast<size_t>(unit)] = 1;
  if (at::GradMode::is_enabled() || kind == ForwardKind::kCheckpointed) {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    if (std::find(this_forward_.begin(), this_forward_.end(), unit) == this_forward_.end())
      this_forward_.push_back(unit);
  }
  emit(EngineEvent::Kind::kBeforeForward, unit, -1, 0);
}

void ShardedModel::after_forward(int unit) {
  if (current_forward_kind() == ForwardKind::kRecompute) return;  // released after its backward
  emit(EngineEvent::Kind::kAfterForward, unit, -1, 0);
  if (scheduler_) scheduler_->done_with(unit, Pass::kForward);
}

void ShardedModel::before_backward(int unit) {
  if (scheduler_) scheduler_->need(unit, Pass::kBackward);
  units_.at(static_cast<size_t>(unit)).check_readable("reached its backward");
  {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    if (std::find(this_backward_entry_.begin(), this_backward_entry_.end(), unit) == this_backward_entry_.end())
      this_backward_entry_.push_back(unit);
  }
  emit(EngineEvent::Kind::kBeforeBackward, unit, -1, 0);
}

void ShardedModel::record_after_backward(int unit) {
  {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    this_backward_.push_back(unit);
  }
  emit(EngineEvent::Kind::kAfterBackward, unit, -1, 0);
  // Its gradients are packed and its parameters are no longer read.
  if (scheduler_) scheduler_->done_with(unit, Pass::kBackward);
}

ExecutionTrace ShardedModel::trace() const {
  std::lock_guard<std::mutex> lock(trace_mutex_);
  return trace_;
}

// ---- Backward ----------------------------------------------------------------

void ShardedModel::begin_backward(bool reduce, bool boundary) {
  // Stage 3: the forward pass ends here (Note [Every gather is agreed in a
  // request round]); units whose forward did not run get no gradient.
  std::vector<int> skipped;
  if (scheduler_) {
    scheduler_->end_pass();
    std::lock_guard<std::mutex> lock(trace_mutex_);
    for (size_t u = 0; u < units_.size(); ++u)
      if (spec_.units[u].has_triggers && ever_entered_[u] &&
          std::find(this_forward_.begin(), this_forward_.end(), static_cast<int>(u)) == this_forward_.end())
        skipped.push_back(static_cast<int>(u));
  }
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
    this_backward_entry_.clear();
  }
  reducer_->begin_backward(reduce, boundary);
  if (!skipped.empty()) reducer_->no_gradient(skipped);
}

void ShardedModel::end_backward() {
  if (scheduler_) {
    reducer_->end_backward([this] { scheduler_->end_pass(); });
  } else {
    reducer_->end_backward();
  }
  {
    std::lock_guard<std::mutex> lock(trace_mutex_);
    if (!backward_recorded_) {
      trace_.backward = this_backward_;
      backward_entry_order_ = this_backward_entry_;
      backward_recorded_ = true;
    }
  }
  if (scheduler_ && !stage3_orders_settled_) settle_stage3_orders();
}

void ShardedModel::settle_stage3_orders() {
  // Every rank reaches the end of its first backward: the all-gather matches.
  stage3_orders_settled_ = true;
  std::vector<int64_t> mine{static_cast<int64_t>(trace_.forward.size()),
                            static_cast<int64_t>(backward_entry_order_.size())};
  uint64_t h = 1469598103934665603ull;  // FNV-1a over both orders
  for (const std::vector<int>* order : {&trace_.forward, &backward_entry_order_})
    for (int u : *order) {
      h ^= static_cast<uint64_t>(u) + 1;
      h *= 1099511628211ull;
    }
  mine.push_back(static_cast<int64_t>(h));
  const std::vector<int64_t> all = comm_detail::all_gather_values(gather_comm_, device(), mine);
  for (size_t k = 0; k < all.size(); ++k)
    if (all[k] != all[k % mine.size()]) {
      if (gather_comm_.rank() == 0)
        std::cerr << "zerotrain: stage 3: the ranks recorded different unit orders in the first step; units are "
                     "gathered on demand, without prefetch\n";
      return;
    }
  scheduler_->set_order(Pass::kForward, trace_.forward);
  scheduler_->set_order(Pass::kBackward, backward_entry_order_);
}

// ---- Step --------------------------------------------------------------------

at::Tensor ShardedModel::grad_norm_sq() { return global_grad_norm_sq(*owned_, layout_, reduce_comm_); }

void ShardedModel::update(OptimizerKind kind, const std::function<optim::StepHyperParams(int)>& hyper,
                          int64_t step, const optim::StepControl& control) {
  zero::update(*owned_, layout_, groups_, kind, hyper, step, control, reduce_comm_, sub_group_numel_);
}

void ShardedModel::gather(const std::vector<int>& units) {
  if (!layout_.sharded()) return;
  if (scheduler_) return scheduler_->gather_and_hold(units);
  gather_units(units_, units, *owned_, gather_comm_, allgather_bucket_numel_,
               [this](EngineEvent::Kind kind, int unit) { emit(kind, unit, -1, 0); });
}

void ShardedModel::gather_params() {
  if (scheduler_) {
    scheduler_->refresh();
    scheduler_->close_window();  // the step's peak, from one boundary to the next
    return;
  }
  std::vector<int> all(units_.size());
  std::iota(all.begin(), all.end(), 0);
  gather(all);
}

void ShardedModel::adopt_full_values(const std::vector<int>& units, int root) {
  if (units.empty()) return;
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> flats;
  for (int u : units) {
    const FlatUnit& U = units_.at(static_cast<size_t>(u));
    U.check_readable("was written in gathered_parameters()");
    flats.push_back(U.flat_params());
  }
  (flats.size() == 1 ? gather_comm_.broadcast(flats[0], root) : gather_comm_.broadcast_coalesced(flats, root)).wait();
  for (int u : units) {
    const auto [b, e] = layout_.owned_range(u, owned_->rank());
    at::Tensor owned = owned_->owned_params(u);
    const at::Tensor full = units_[static_cast<size_t>(u)].flat_params().narrow(0, b, e - b);
    if (owned.data_ptr() != full.data_ptr()) owned.copy_(full);  // stage 3's parameter shard
    if (!owned_->master_aliases_params()) owned_->master(u).copy_(owned);
  }
}

void ShardedModel::release(const std::vector<int>& units) {
  if (scheduler_) scheduler_->release_held(units);
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
  int64_t b = owned_->param_shard_bytes();
  for (const FlatUnit& u : units_) b += u.param_bytes();
  return b;
}

int64_t ShardedModel::peak_gathered_bytes() const {
  if (scheduler_) return scheduler_->peak_live_numel() * static_cast<int64_t>(c10::elementSize(dtype()));
  return param_bytes() - owned_->param_shard_bytes();  // every unit, always
}

int64_t ShardedModel::grad_bytes() const {
  int64_t b = owned_->grad_shard_bytes();
  for (const FlatUnit& u : units_) b += u.grad_bytes();
  return b;
}

}  // namespace zerotrain::zero
