#pragma once
// The ZeRO core: a model's parameters as units (Note [The unit is a module
// subtree]), what this rank owns of them, the gradient pipeline and the
// sharded step. It works on named parameters, unit boundaries and four
// triggers, and knows nothing of torch::nn::Module: the C++ engine drives it
// through zerotrain::Unit wrappers and its own backward()/step(), the Python
// package through nn.Module hooks.
//
// Note [The four triggers]
// before_forward(u) and after_forward(u) bracket a unit's forward;
// before_backward(u) runs when autograd reaches the unit's outputs;
// after_backward(u) when the last of the unit's parameters has its gradient
// (the core fires it itself, from the gradient hooks, in every backward, and
// for units that got no gradient when autograd returns). At stages 0-2 the
// forward triggers check that the unit's parameters may be read and record
// the execution order; stage 3 gathers there (GatherScheduler) and releases
// after the forward and after the unit's backward. The core records the
// order it sees (ExecutionTrace): the first training forward and the first
// backward are kept, later forwards are compared with the first. Only
// forwards under grad mode count: evaluation does not disturb the record. At
// stage 3 the orders are checked across ranks at the end of the first
// backward and, when every rank saw the same, prefetching follows them.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/engine.h>
#include <zerotrain/units.h>

#include "zero/flat_unit.h"
#include "zero/gather_scheduler.h"
#include "zero/grad_reducer.h"
#include "zero/model_layout.h"
#include "zero/model_spec.h"
#include "zero/owned_state.h"
#include "zero/shard_optimizer.h"

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace zerotrain::zero {

struct CorePlan {
  ShardingPolicy policy;
  ReducePlan reduce;               // policy fields and averaging filled in by the core
  bool prescale_gradients = false;
  double predivide_factor = 1.0;
  int64_t allgather_bucket_numel = 500'000'000;
  /// The most owned elements one optimizer call updates (sub_group_size):
  /// Adam runs over a group's runs in sub-groups of this size.
  int64_t sub_group_numel = 1'000'000'000;
  GatherPlan gather;               // stage 3
  OffloadPlan offload;             // Note [Offload keeps the step on the host] (owned_state.h)
};

class ShardedModel final : public UnitTriggers {
 public:
  using Observer = std::function<void(const EngineEvent&)>;

  /// Moves every parameter into its unit's flat buffer (its .data becomes a
  /// view), makes every rank start from rank 0's values (one broadcast per
  /// unit on `reduce_comm`), allocates what this rank owns, and hooks every
  /// parameter's gradient accumulator. One unit at a time: parameters sharded
  /// at creation (NamedParameter::piece) are gathered into their unit, whose
  /// owned part is taken and which is released again before the next one. Gradients are reduced on `reduce_comm`,
  /// parameters gathered on `gather_comm` (Note [Gathers and reductions
  /// travel on separate channels] in comm/communicator.cpp); both outlive the core.
  ShardedModel(ModelSpec spec, const CorePlan& plan, Communicator& reduce_comm, Communicator& gather_comm,
               Observer observer);
  ~ShardedModel() override;
  ShardedModel(const ShardedModel&) = delete;
  ShardedModel& operator=(const ShardedModel&) = delete;

  // ---- Note [The four triggers] ----
  void before_forward(int unit) override;
  void after_forward(int unit) override;
  void before_backward(int unit) override;

  // ---- Backward ----
  /// `reduce`: whether this backward reduces; `boundary`: whether it is the
  /// last micro-batch before an optimizer step.
  void begin_backward(bool reduce, bool boundary);
  void end_backward();
  GradState grad_state() const noexcept { return reducer_->state(); }

  // ---- Step ----
  /// Note [One reduction for the norm and the overflow flag]: one fp64
  /// element on the model's device.
  at::Tensor grad_norm_sq();
  void update(OptimizerKind kind, const std::function<optim::StepHyperParams(int group)>& hyper, int64_t step,
              const optim::StepControl& control);
  /// Stages 1-2: every unit's parameters from the owners' shards. Stage 3:
  /// the units held gathered (persistent ones, and any still gathered on
  /// some rank), from the updated shards.
  void gather_params();
  /// Collective: the given units gathered now (on the gather channel); at
  /// stage 3 they stay gathered, through forwards and backwards, until
  /// release() names them as often.
  void gather(const std::vector<int>& units);
  /// Collective: `units` (gathered) take rank `root`'s full parameters, as
  /// parameters and fp32 master weights on every rank (a gathered_parameters
  /// scope with a modifier rank).
  void adopt_full_values(const std::vector<int>& units, int root);
  /// Collective, stage 3: ends one gather() of `units`; those no longer held
  /// are released (a no-op below stage 3).
  void release(const std::vector<int>& units);
  /// Zeroes every gradient the core keeps; the gradient state becomes clean.
  void zero_grads();
  /// After the master weights were overwritten (a checkpoint load): the
  /// parameters follow them on every rank and the gradients are zeroed.
  void after_master_load();

  // ---- Narrow views ----
  const ModelLayout& layout() const noexcept { return layout_; }
  OwnedState& owned() noexcept { return *owned_; }
  const OwnedState& owned() const noexcept { return *owned_; }
  const std::vector<FlatUnit>& units() const noexcept { return units_; }
  const std::vector<OptimizerGroup>& groups() const noexcept { return groups_; }
  const std::vector<std::string>& param_names() const noexcept { return names_; }
  const at::Tensor& param(int p) const { return spec_.params.at(static_cast<size_t>(p)).tensor; }
  bool unit_has_triggers(int u) const { return spec_.units.at(static_cast<size_t>(u)).has_triggers; }
  const std::string& unit_path(int u) const { return spec_.units.at(static_cast<size_t>(u)).name; }
  c10::Device device() const { return units_.front().flat_params().device(); }
  at::ScalarType dtype() const { return units_.front().flat_params().scalar_type(); }
  const std::vector<int>& reduce_order() const noexcept { return reducer_->launch_order(); }
  ExecutionTrace trace() const;
  /// Stage 3's scheduler; null at stages 0-2.
  const GatherScheduler* scheduler() const noexcept { return scheduler_.get(); }
  bool shards_parameters() const noexcept { return policy_.parameters; }

  /// The parameter shard (stage 3) and every unit's full parameters held now.
  int64_t param_bytes() const;
  /// The most bytes of full unit parameters held at once in the last
  /// optimizer step (at stage 3; every unit's below it).
  int64_t peak_gathered_bytes() const;
  int64_t grad_bytes() const;
  int64_t buffer_bytes() const { return reducer_->bucket_bytes(); }

 private:
  /// Unit `u`'s parameters sharded at creation get their full values; returns how many it had.
  size_t materialize_pieces(int u);
  void emit(EngineEvent::Kind kind, int unit, int param, int in_flight) const;
  void record_after_backward(int unit);
  void settle_stage3_orders();

  ModelSpec spec_;
  std::vector<std::string> names_;
  ShardingPolicy policy_;
  int64_t allgather_bucket_numel_;
  int64_t sub_group_numel_;
  Communicator& reduce_comm_;
  Communicator& gather_comm_;
  Observer observer_;
  ModelLayout layout_;
  std::vector<FlatUnit> units_;  // never reallocated: the reducer and OwnedState keep references
  std::unique_ptr<OwnedState> owned_;
  std::vector<OptimizerGroup> groups_;
  std::unique_ptr<GradReducer> reducer_;
  std::unique_ptr<GatherScheduler> scheduler_;  // stage 3

  mutable std::mutex trace_mutex_;
  ExecutionTrace trace_;
  bool forward_recorded_ = false;
  bool backward_recorded_ = false;
  bool stage3_orders_settled_ = false;
  std::vector<int> this_forward_;          // units entered since the last backward, first entries
  std::vector<int> this_backward_;         // units whose backward finished, in this backward
  std::vector<int> this_backward_entry_;   // units whose backward began, in this backward
  std::vector<int> backward_entry_order_;  // the first backward's
  std::vector<char> ever_entered_;         // before_forward has fired for the unit
};

}  // namespace zerotrain::zero
