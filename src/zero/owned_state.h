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
//
// Note [Offload keeps the step on the host]
// With optimizer offload (ZeRO-Offload) the fp32 master weights and the
// moments live in host memory (pinned when the model is on a GPU and
// pin_memory is on). At the boundary, each unit's reduced gradients are copied
// into a host fp32 buffer as soon as its reduction retires, during the
// backward rather than all at the step (the copies are blocking for now:
// streams and events come with the GPU work); the step runs the CPU kernels on the host
// buffers and writes the rounded parameters into a host staging buffer, from
// which each tile is copied back to the device while the next tile computes
// (zero::update). With parameter offload (stage 3) the parameter shard itself
// lives in host memory: the step writes into it directly, and a gather copies
// the unit's part into this rank's slot of the unit's flat buffer, which the
// all-gather then uses in place. On a machine without a GPU the host and the
// "device" are the same memory, but the buffers, copies and tiles are the
// same, so the mechanism is tested end to end; the arithmetic is that of the
// non-offloaded step (bf16/fp16 gradients widen to fp32 exactly), so the two
// agree bit for bit.

#include "optim/reference_step.h"
#include "zero/flat_unit.h"
#include "zero/model_layout.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace zerotrain::zero {

/// zero_optimization.offload_optimizer / offload_param with device "cpu".
struct OffloadPlan {
  bool optimizer = false;  // master weights and moments in host memory
  bool params = false;     // stage 3's parameter shard in host memory
  bool pin_memory = true;  // pinned host buffers when the model is on a GPU
};

class OwnedState {
 public:
  /// `units` must outlive this object and not move; they may be built after
  /// it. Allocates what this rank owns, in `opts` (the model dtype and
  /// device), with the moments at zero; take_values() fills each unit's part.
  OwnedState(const ModelLayout& layout, std::vector<FlatUnit>& units, int rank, bool grad_shard, bool param_shard,
             const at::TensorOptions& opts, const OffloadPlan& offload = {});
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

  // ---- Note [Offload keeps the step on the host] ----
  bool offloads_optimizer() const noexcept { return offload_.optimizer; }
  /// Whether the update writes into a staging buffer that publish() copies back.
  bool stages_params() const noexcept { return host_staging_.defined(); }
  /// Where the master weights and moments live (the update runs there).
  c10::Device optimizer_device() const;
  /// The gradients the update reads: owned_grads, or their host copy.
  at::Tensor step_grads(int u) const;
  /// Where the update writes the rounded parameters: owned_params, or the
  /// host staging buffer that publish() copies from.
  at::Tensor step_param_copies(int u) const;
  /// At the boundary, once unit u's reduced gradients are in owned_grads:
  /// their copy into host memory (a no-op without optimizer offload).
  void grads_reduced(int u);
  /// Elements [begin, begin + n) of unit u's owned parameters from the
  /// staging buffer (a no-op when the update wrote them in place).
  void publish(int u, int64_t begin, int64_t n);
  /// What this rank contributes to unit u's all-gather, which has just begun
  /// (its flat storage is allocated): the owned parameters, or with parameter
  /// offload their host copy brought into this rank's slot of the flat buffer.
  at::Tensor gather_input(int u);

  /// 0 when the master weights are the parameters.
  int64_t master_bytes() const;
  int64_t moment_bytes() const;
  int64_t grad_shard_bytes() const;
  int64_t param_shard_bytes() const;
  /// The host gradient copy and the parameter staging buffer.
  int64_t offload_buffer_bytes() const;
  /// Of everything above, what lives in host memory because of offload.
  int64_t host_bytes() const;

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
  at::Tensor host_grads_;    // fp32, optimizer offload
  at::Tensor host_staging_;  // model dtype, optimizer offload without parameter offload
  OffloadPlan offload_;
  bool master_aliases_params_ = false;
};

}  // namespace zerotrain::zero
