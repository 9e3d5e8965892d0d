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
// the execution order; stage 3 gathers and releases there. The core records
// the order it sees (ExecutionTrace): the first training forward and the
// first backward are kept, later forwards are compared with the first. Only
// forwards under grad mode count: evaluation does not disturb the record.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/engine.h>
#include <zerotrain/units.h>

#include "zero/flat_unit.h"
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
};

class ShardedModel final : public UnitTriggers {
 public:
  using Observer = std::function<void(const EngineEvent&)>;

  /// Moves every parameter into its unit's flat buffer (its .data becomes a
  /// view), makes every rank start from rank 0's values (one broadcast per
  /// unit on `reduce_comm`), allocates what this rank owns, and hooks every
  /// parameter's gradient accumulator. Gradients are reduced on `reduce_comm`,
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
  /// Note [One reduction for the norm and the overflow flag].
  double grad_norm_sq();
  void update(OptimizerKind kind, const std::function<optim::StepHyperParams(int group)>& hyper, int64_t step,
              const optim::StepControl& control);
  /// Stages 1-3: every unit's parameters from the owners' shards.
  void gather_params();
  /// Stages 1-3: the given units only (on the gather channel).
  void gather(const std::vector<int>& units);
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
  c10::Device device() const { return units_.front().flat_params().device(); }
  at::ScalarType dtype() const { return units_.front().flat_params().scalar_type(); }
  const std::vector<int>& reduce_order() const noexcept { return reducer_->launch_order(); }
  ExecutionTrace trace() const;

  int64_t param_bytes() const;
  int64_t grad_bytes() const;
  int64_t buffer_bytes() const { return reducer_->bucket_bytes(); }

 private:
  void emit(EngineEvent::Kind kind, int unit, int param, int in_flight) const;
  void record_after_backward(int unit);

  ModelSpec spec_;
  std::vector<std::string> names_;
  ShardingPolicy policy_;
  int64_t allgather_bucket_numel_;
  Communicator& reduce_comm_;
  Communicator& gather_comm_;
  Observer observer_;
  ModelLayout layout_;
  std::vector<FlatUnit> units_;  // never reallocated: the reducer and OwnedState keep references
  std::unique_ptr<OwnedState> owned_;
  std::vector<OptimizerGroup> groups_;
  std::unique_ptr<GradReducer> reducer_;

  mutable std::mutex trace_mutex_;
  ExecutionTrace trace_;
  bool forward_recorded_ = false;
  bool backward_recorded_ = false;
  std::vector<int> this_forward_;   // units entered since the last backward, first entries
  std::vector<int> this_backward_;  // units whose backward finished, in this backward
};

}  // namespace zerotrain::zero
