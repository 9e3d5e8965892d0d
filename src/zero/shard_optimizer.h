#pragma once
// The optimizer step on the part of each group this rank owns: the global
// gradient norm (and with it the overflow check), unscaling fused with
// clipping, Adam/AdamW/LAMB on the fp32 master weights, and the all-gather
// that brings every rank's updated shard back into the flat parameters.
//
// Note [One reduction for the norm and the overflow flag]
// DeepSpeed all-reduces an overflow flag (MAX) and then the squared norm
// (SUM). A sum of squares taken in fp64 over finite fp32/bf16/fp16 values can
// not overflow (each square is below 1.2e77), so it is finite exactly when
// every rank's gradients are: one fp64 all-reduce gives both the norm and the
// overflow decision. When nothing is sharded (stage 0) every rank already holds
// the whole reduced gradient and no reduction is needed. The host reads this
// one scalar per step; it is the only synchronisation in the step, and the
// loss scaler and the schedule need the decision on the host anyway. The
// update kernels themselves take the scale and the flag on the device (Note
// [Loss scaling stays on the device] in optim/fused_optimizer.h).

#include <zerotrain/comm.h>
#include <zerotrain/config.h>

#include "optim/fused_optimizer.h"
#include "optim/reference_step.h"
#include "zero/flat_group.h"

#include <vector>

namespace zerotrain::zero {

/// The squared L2 norm of every group's reduced gradients over all ranks, in
/// fp64, as the gradients are (still multiplied by the loss scale). inf or nan
/// when any gradient is.
double global_grad_norm_sq(const std::vector<FlatParamGroup>& groups, Communicator& comm);

/// One update of the owned part of `group` with the fused kernels
/// (optim/fused_optimizer.h): gradients are multiplied by control.inv_scale
/// (1 / (loss scale * clipping coefficient)) in the same pass as Adam/AdamW on
/// the master weights and the rounded copy into the owned parameters; LAMB
/// takes its two stages. `step` counts applied updates from 1.
void step_group(FlatParamGroup& group, OptimizerKind kind, const optim::StepHyperParams& h,
                int64_t step, const optim::StepControl& control, Communicator& comm);

/// Stages 1 and 2: every rank's updated shard into every rank's flat
/// parameters, in runs of consecutive units of at most `bucket_numel` elements
/// (allgather_bucket_size; a larger unit is gathered alone). In place: each
/// rank's input is its own shard of the output.
void gather_params(std::vector<FlatParamGroup>& groups, Communicator& comm, int64_t bucket_numel);

}  // namespace zerotrain::zero
