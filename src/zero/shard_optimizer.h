#pragma once
// The optimizer step on the part of every unit this rank owns: the global
// gradient norm (and with it the overflow check), unscaling fused with
// clipping, Adam/AdamW/LAMB on the fp32 master weights per optimizer group,
// and the all-gather that brings every rank's updated shard back into each
// unit's flat parameters.
//
// Note [One reduction for the norm and the overflow flag]
// DeepSpeed all-reduces an overflow flag (MAX) and then the squared norm
// (SUM). A sum of squares taken in fp64 over finite fp32/bf16/fp16 values can
// not overflow (each square is below 1.2e77), so it is finite exactly when
// every rank's gradients are: one fp64 all-reduce gives both the norm and the
// overflow decision. When nothing is sharded (stage 0) every rank already holds
// the whole reduced gradient and no reduction is needed. The result stays on
// the device: the clipping coefficient and the kernels' inverse scale are
// derived from it there (Note [The step's scalars stay on the device] in
// precision/step_scalars.h), and the update kernels take the scale and the
// flag on the device (Note [Loss scaling stays on the device] in
// optim/fused_optimizer.h).

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/engine.h>

#include "optim/fused_optimizer.h"
#include "optim/reference_step.h"
#include "zero/flat_unit.h"
#include "zero/model_layout.h"
#include "zero/owned_state.h"

#include <functional>
#include <vector>

namespace zerotrain::zero {

/// An optimizer parameter group as the step sees it: its settings and where
/// its parameters' owned elements lie.
struct OptimizerGroup {
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::vector<int> params;     // model parameter indices
  std::vector<OwnedRun> runs;  // Note [Optimizer groups run over units]
};

/// The squared L2 norm of every unit's reduced gradients over all ranks, in
/// fp64, as the gradients are (still multiplied by the loss scale): one element
/// on the gradients' device, not read by the host. inf or nan when any
/// gradient is. `comm` reduces it when the owned parts are shards.
at::Tensor global_grad_norm_sq(const OwnedState& owned, const ModelLayout& layout, Communicator& comm);

/// One update of every group's owned elements with the fused kernels
/// (optim/fused_optimizer.h): gradients are multiplied by control.inv_scale
/// (1 / (loss scale * clipping coefficient)) in the same pass as Adam/AdamW on
/// the master weights and the rounded copy into the owned parameters; LAMB
/// takes its two stages, with one all-reduce of the per-parameter norms.
/// `step` counts applied updates from 1; `hyper(g)` is group g's settings.
/// Adam runs in sub-groups of at most `sub_group_numel` elements (one fused
/// call each), as DeepSpeed's stage 3 steps its sub-groups one by one.
void update(OwnedState& owned, const ModelLayout& layout, const std::vector<OptimizerGroup>& groups,
            OptimizerKind kind, const std::function<optim::StepHyperParams(int group)>& hyper, int64_t step,
            const optim::StepControl& control, Communicator& comm, int64_t sub_group_numel);

using GatherEvents = std::function<void(EngineEvent::Kind kind, int unit)>;

/// Stages 1-3: every rank's updated shard of `unit_ids` into every rank's
/// flat parameters, in runs of consecutive units of at most `bucket_numel`
/// elements (allgather_bucket_size; a larger unit is gathered alone). In
/// place: each rank's input is its own shard of the output.
void gather_units(std::vector<FlatUnit>& units, const std::vector<int>& unit_ids, OwnedState& owned,
                  Communicator& comm, int64_t bucket_numel, const GatherEvents& events);

}  // namespace zerotrain::zero
