#pragma once
// What this rank updates: its owned part of every unit (a shard at stages
// 1-3, every unit whole at stage 0) as parameters, reduced gradients, fp32
// master weights and Adam moments. See Note [Optimizer groups run over units]
// in model_layout.h for how the parts lie.
//
// At stage 3 the owned parameters are a buffer of their own (the parameter
// shard), since the units' flat buffers are released between uses.
//
// Note [Where gradients live]
// Stages 0 and 1 keep full gradients: each unit has a flat gradient buffer in
// the model dtype and every parameter's .grad is a view into it, so autograd
// accumulates micro-batches in place and the boundary reduces each unit where
// it lies. Stage 2 keeps only this rank's shard of each unit's reduced
// gradient (the gradient shard, one buffer for all units); a parameter's full
// .grad lives from the moment autograd produces it until its unit is packed
// into a bucket, then it is dropped. What the optimizer reads is
// owned_grads(u) in both cases.

#include "optim/reference_step.h"
#include "zero/flat_unit.h"
#include "zero/model_layout.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace zerotrain::zero {

class OwnedState {
 public:
  /// `units` must outlive this object and not move; they may be built after
  /// it. Allocates what this rank owns, in `opts` (the model dtype and
  /// device), with the moments at zero; take_values() fills each unit's part.
  OwnedState(const ModelLayout& layout, std::vector<FlatUnit>& units, int rank, bool grad_shard, bool param_shard,
             const at::TensorOptions& opts);
  /// The master weights (and, with a parameter shard, the shard) of unit `u`
  /// from its current full parameters, which must be gathered.
  void take_values(int u);

  int rank() const noexcept { return rank_; }
  /// The model-dtype parameters this rank updates: a view of the unit's flat
  /// buffer, or at stage 3 of the parameter shard.
  at::Tensor owned_params(int u) const;
  /// The reduced gradients the optimizer reads; see Note [Where gradients live].
  at::Tensor owned_grads(int u) const;
  /// fp32. Aliases owned_params when the model is fp32 and nothing is sharded.
  at::Tensor master(int u) const;
  optim::Moments moments(int u) const;
  bool master_aliases_params() const noexcept { return master_aliases_params_; }
  bool has_grad_shard() const noexcept { return grad_shard_.defined(); }

  /// Zeroes the gradient shard (stage 2).
  void zero_grad_shard();
  /// After the master weights changed (a checkpoint load): the owned
  /// parameters become the master rounded to the model dtype, as the step rounds.
  void copy_master_to_params();

  /// 0 when the master weights are the parameters.
  int64_t master_bytes() const;
  int64_t moment_bytes() const;
  int64_t grad_shard_bytes() const;
  int64_t param_shard_bytes() const;

 private:
  at::Tensor part(const at::Tensor& buffer, int u) const;

  const ModelLayout& layout_;
  std::vector<FlatUnit>& units_;
  int rank_;
  at::Tensor master_;
  at::Tensor exp_avg_;
  at::Tensor exp_avg_sq_;
  at::Tensor grad_shard_;
  at::Tensor param_shard_;
  bool master_aliases_params_ = false;
};

}  // namespace zerotrain::zero
