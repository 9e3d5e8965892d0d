// See Note [One reduction for the norm and the overflow flag] in shard_optimizer.h
// and Note [LAMB on shards needs whole-parameter norms] in optim/reference_step.h.

#include "zero/shard_optimizer.h"

#include <ATen/ops/empty_like.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace zerotrain::zero {

double global_grad_norm_sq(const std::vector<FlatParamGroup>& groups, Communicator& comm) {
  RECORD_FUNCTION("zerotrain::grad_norm", std::vector<c10::IValue>());
  TORCH_INTERNAL_ASSERT(!groups.empty());
  at::Tensor sum = at::zeros({1}, groups.front().flat_params().options().dtype(at::kDouble));
  bool sharded = false;
  for (const FlatParamGroup& g : groups) {
    sharded = sharded || g.layout().sharded();
    std::vector<at::Tensor> grads;
    for (const Unit& u : g.units()) grads.push_back(g.owned_grads(u));
    sum.add_(optim::multi_tensor_sum_squares(grads).sum());
  }
  if (sharded) comm.all_reduce(sum, ReduceOp::kSum).wait();
  return sum.item<double>();
}

namespace {

// The pieces of parameters inside what this rank owns of `u`, with offsets
// relative to the owned part.
std::vector<Segment> owned_segments(const FlatParamGroup& g, const Unit& u) {
  if (g.layout().sharded()) return u.layout.segments(g.layout().rank());
  std::vector<Segment> all;
  for (size_t i = 0; i < u.layout.slots().size(); ++i) {
    const ParamSlot& s = u.layout.slots()[i];
    if (s.numel > 0) all.push_back({static_cast<int>(i), 0, s.offset, s.numel});
  }
  return all;
}

// The 16-bit (or sharded fp32) parameters the step writes in the same pass,
// or none when the master weights are the parameters.
bool needs_param_copy(const FlatParamGroup& g) { return g.master_bytes() > 0; }

void lamb_group(FlatParamGroup& g, const optim::StepHyperParams& h, int64_t step,
                const optim::StepControl& control, Communicator& comm) {
  // Note [LAMB on shards needs whole-parameter norms]: one "tensor" per owned
  // segment of a parameter; the segments' squared norms are summed per
  // parameter (and across ranks) between the two stages, on the device.
  optim::LambTensors t;
  std::vector<int64_t> segment_param;
  const bool copy = needs_param_copy(g);
  for (const Unit& u : g.units()) {
    const at::Tensor master = g.master(u);
    const at::Tensor grads = g.owned_grads(u);
    const at::Tensor update = at::empty_like(master);
    const at::Tensor params = g.owned_params(u);
    const optim::Moments m = g.moments(u);
    for (const Segment& s : owned_segments(g, u)) {
      auto piece = [&](const at::Tensor& x) { return x.narrow(0, s.shard_offset, s.numel); };
      t.params.push_back(piece(master));
      t.grads.push_back(piece(grads));
      t.exp_avg.push_back(piece(m.exp_avg));
      t.exp_avg_sq.push_back(piece(m.exp_avg_sq));
      t.updates.push_back(piece(update));
      if (copy) t.param_copies.push_back(piece(params));
      segment_param.push_back(u.first_param + s.param);
    }
  }
  const at::TensorOptions f64 = g.flat_params().options().dtype(at::kDouble);
  at::Tensor per_param = at::zeros({g.layout().num_params(), 2}, f64);
  at::Tensor index;
  if (!t.params.empty()) {
    index = at::tensor(segment_param, at::kLong).to(g.flat_params().device());
    per_param.index_add_(0, index, optim::fused_lamb_prepare(t, h, control));
  }
  if (g.layout().sharded()) comm.all_reduce(per_param, ReduceOp::kSum).wait();
  if (!t.params.empty())
    optim::fused_lamb_apply(t, per_param.index_select(0, index), h, step, control);
}

}  // namespace

void step_group(FlatParamGroup& g, OptimizerKind kind, const optim::StepHyperParams& h,
                int64_t step, const optim::StepControl& control, Communicator& comm) {
  RECORD_FUNCTION("zerotrain::optimizer_step", std::vector<c10::IValue>());
  c10::NoGradGuard no_grad;
  if (kind == OptimizerKind::kLamb) return lamb_group(g, h, step, control, comm);
  // One fused pass per unit: unscale and clip, Adam on the fp32 master, and
  // the rounded copy into the owned parameters.
  optim::AdamTensors t;
  const bool copy = needs_param_copy(g);
  for (const Unit& u : g.units()) {
    const optim::Moments m = g.moments(u);
    t.params.push_back(g.master(u));
    t.grads.push_back(g.owned_grads(u));
    t.exp_avg.push_back(m.exp_avg);
    t.exp_avg_sq.push_back(m.exp_avg_sq);
    if (copy) t.param_copies.push_back(g.owned_params(u));
  }
  optim::fused_adam(t, h, step, control);
}

void gather_params(std::vector<FlatParamGroup>& groups, Communicator& comm, int64_t bucket_numel) {
  RECORD_FUNCTION("zerotrain::gather_params", std::vector<c10::IValue>());
  std::vector<CommHandle> handles;
  for (FlatParamGroup& g : groups) {
    if (!g.layout().sharded()) continue;
    const auto& units = g.units();
    size_t k = 0;
    while (k < units.size()) {
      std::vector<at::Tensor> outs{g.unit_params(units[k])};
      std::vector<at::Tensor> ins{g.owned_params(units[k])};
      int64_t total = units[k].layout.padded_numel();
      size_t next = k + 1;
      while (next < units.size() && total + units[next].layout.padded_numel() <= bucket_numel) {
        total += units[next].layout.padded_numel();
        outs.push_back(g.unit_params(units[next]));
        ins.push_back(g.owned_params(units[next]));
        ++next;
      }
      handles.push_back(outs.size() == 1 ? comm.all_gather(outs[0], ins[0])
                                         : comm.all_gather_coalesced(outs, ins));
      k = next;
    }
  }
  for (auto& h : handles) h.wait();
}

}  // namespace zerotrain::zero
