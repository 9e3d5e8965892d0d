#pragma once
// One parameter group's storage: the flat parameter buffer the model's
// parameters are views into, the gradient storage the stage asks for, and this
// rank's fp32 master weights and optimizer moments. See Note [Flat buffer
// layout] and Note [The unit is the bucket].
//
// Note [Where gradients live]
// Stages 0 and 1 keep full gradients: one flat buffer in the model dtype, and
// every parameter's .grad is a view into it, so autograd accumulates
// micro-batches in place and the boundary reduces each unit where it lies.
// Stage 2 keeps only this rank's shard of each unit's reduced gradient (the
// "gradient shard"); the full .grad of a parameter lives from the moment
// autograd produces it until its unit is packed into a bucket, then it is
// dropped. What the optimizer reads is owned_grads(unit) in both cases.

#include <zerotrain/config.h>

#include "optim/reference_step.h"
#include "zero/group_layout.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace zerotrain {
class Communicator;
}

namespace zerotrain::zero {

struct GroupSpec {
  std::vector<at::Tensor> params;  // leaves, registration order
  std::vector<std::string> names;  // for messages
  double lr = 1e-3;
  double weight_decay = 0.0;
};

struct GroupPlacement {
  ShardingPolicy policy;
  int rank = 0;
  int world_size = 1;
  int64_t bucket_numel = 500'000'000;
  int64_t align = 1;
};

class FlatParamGroup {
 public:
  /// Moves the parameters' values into a new flat buffer (their .data becomes a
  /// view of it), makes every rank start from rank 0's values (one broadcast
  /// per unit), and allocates gradients, master weights and moments.
  FlatParamGroup(GroupSpec spec, const GroupPlacement& placement, Communicator& comm);

  const GroupLayout& layout() const noexcept { return layout_; }
  const std::vector<Unit>& units() const noexcept { return layout_.units(); }
  const std::vector<at::Tensor>& params() const noexcept { return spec_.params; }
  const std::string& name(int param) const { return spec_.names.at(static_cast<size_t>(param)); }
  double lr() const noexcept { return spec_.lr; }
  double weight_decay() const noexcept { return spec_.weight_decay; }
  bool grads_sharded() const noexcept { return policy_.gradients; }
  /// What the layout was built from; a checkpoint rebuilds every rank's layout with it.
  const GroupPlacement& placement() const noexcept { return placement_; }

  const at::Tensor& flat_params() const noexcept { return flat_params_; }
  /// Stages 0/1: the full gradient buffer; undefined for stage 2.
  const at::Tensor& flat_grads() const noexcept { return flat_grads_; }
  /// Stage 2: this rank's reduced gradients; undefined for stages 0/1.
  const at::Tensor& grad_shard() const noexcept { return grad_shard_; }

  at::Tensor unit_params(const Unit& u) const;
  /// Stages 0/1 only: the unit's part of flat_grads.
  at::Tensor unit_grads(const Unit& u) const;
  /// The model-dtype parameters this rank updates (a slice of flat_params).
  at::Tensor owned_params(const Unit& u) const;
  /// The reduced gradients this rank's optimizer reads; see Note [Where gradients live].
  at::Tensor owned_grads(const Unit& u) const;
  /// fp32; aliases owned_params when the model is fp32 and nothing is sharded.
  at::Tensor master(const Unit& u) const;
  optim::Moments moments(const Unit& u) const;
  /// Stages 0/1: parameter `param`'s place in flat_grads, shaped like it.
  at::Tensor grad_slot(int param) const;

  /// Stages 0/1: points every parameter's .grad at its slot again (after a
  /// module-level zero_grad(set_to_none) dropped the views).
  void attach_grad_views();
  /// Zeroes every gradient this group keeps.
  void zero_grads();

  /// 0 when master aliases the parameters; otherwise the optimizer writes the
  /// updated master into owned_params (rounded to the model dtype) in its pass.
  int64_t master_bytes() const;
  int64_t moment_bytes() const;
  int64_t param_bytes() const { return static_cast<int64_t>(flat_params_.nbytes()); }
  int64_t grad_bytes() const;

 private:
  GroupSpec spec_;
  GroupPlacement placement_;
  ShardingPolicy policy_;
  GroupLayout layout_;
  at::Tensor flat_params_;
  at::Tensor flat_grads_;
  at::Tensor grad_shard_;
  at::Tensor master_;
  at::Tensor exp_avg_;
  at::Tensor exp_avg_sq_;
  bool master_aliases_params_ = false;
};

}  // namespace zerotrain::zero
