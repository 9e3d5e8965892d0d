// See Note [One reduction for the norm and the overflow flag] in shard_optimizer.h
// and Note [LAMB on shards needs whole-parameter norms] in optim/reference_step.h.

#include "zero/shard_optimizer.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace zerotrain::zero {

double global_grad_norm_sq(const std::vector<FlatParamGroup>& groups, Communicator& comm) {
  RECORD_FUNCTION("zerotrain::grad_norm", std::vector<c10::IValue>());
  TORCH_INTERNAL_ASSERT(!groups.empty());
  at::Tensor sum = at::zeros({1}, groups.front().flat_params().options().dtype(at::kDouble));
  bool sharded = false;
  for (const FlatParamGroup& g : groups) {
    sharded = sharded || g.layout().sharded();
    for (const Unit& u : g.units())
      sum.add_(at::linalg_vector_norm(g.owned_grads(u), 2, c10::nullopt, false, at::kDouble).square());
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

void lamb_group(FlatParamGroup& g, const optim::StepHyperParams& h, int64_t step,
                const std::vector<at::Tensor>& grads, Communicator& comm) {
  // Note [LAMB on shards needs whole-parameter norms]
  const int n = g.layout().num_params();
  std::vector<double> norms(2 * static_cast<size_t>(n), 0.0);  // [param_sq..., update_sq...]
  std::vector<at::Tensor> updates;
  for (size_t k = 0; k < g.units().size(); ++k) {
    const Unit& u = g.units()[k];
    at::Tensor update = at::empty_like(grads[k]);
    at::Tensor master = g.master(u);
    optim::Moments m = g.moments(u);
    for (const Segment& s : owned_segments(g, u)) {
      optim::Moments ms{m.exp_avg.narrow(0, s.shard_offset, s.numel),
                        m.exp_avg_sq.narrow(0, s.shard_offset, s.numel)};
      at::Tensor us = update.narrow(0, s.shard_offset, s.numel);
      const optim::LambPartialNorms part =
          optim::lamb_prepare(master.narrow(0, s.shard_offset, s.numel),
                              grads[k].narrow(0, s.shard_offset, s.numel), ms, us, h);
      const size_t param = static_cast<size_t>(u.first_param + s.param);
      norms[param] += part.param_sq;
      norms[static_cast<size_t>(n) + param] += part.update_sq;
    }
    updates.push_back(std::move(update));
  }
  if (g.layout().sharded()) {
    at::Tensor host = at::empty({2 * n}, at::kDouble);
    std::copy(norms.begin(), norms.end(), host.data_ptr<double>());
    at::Tensor t = host.to(g.flat_params().device());
    comm.all_reduce(t, ReduceOp::kSum).wait();
    host = t.cpu();
    std::copy(host.data_ptr<double>(), host.data_ptr<double>() + 2 * n, norms.begin());
  }
  for (size_t k = 0; k < g.units().size(); ++k) {
    const Unit& u = g.units()[k];
    at::Tensor master = g.master(u);
    for (const Segment& s : owned_segments(g, u)) {
      const size_t param = static_cast<size_t>(u.first_param + s.param);
      const double trust = optim::lamb_trust_ratio(
          std::sqrt(norms[param]), std::sqrt(norms[static_cast<size_t>(n) + param]), h.lamb);
      at::Tensor ps = master.narrow(0, s.shard_offset, s.numel);
      optim::lamb_apply(ps, updates[k].narrow(0, s.shard_offset, s.numel), trust, step, h);
    }
  }
}

}  // namespace

void step_group(FlatParamGroup& g, OptimizerKind kind, const optim::StepHyperParams& h,
                int64_t step, double grad_divisor, Communicator& comm) {
  RECORD_FUNCTION("zerotrain::optimizer_step", std::vector<c10::IValue>());
  c10::NoGradGuard no_grad;
  // Unscale and clip in one multiply, in fp32 (DeepSpeed: grad *= 1 / (clip * scale)).
  std::vector<at::Tensor> grads;
  for (const Unit& u : g.units()) {
    at::Tensor g32 = g.owned_grads(u).to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
    if (grad_divisor != 1.0) g32.mul_(1.0 / grad_divisor);
    grads.push_back(std::move(g32));
  }
  if (kind == OptimizerKind::kLamb) {
    lamb_group(g, h, step, grads, comm);
  } else {
    for (size_t k = 0; k < g.units().size(); ++k) {
      const Unit& u = g.units()[k];
      at::Tensor master = g.master(u);
      optim::Moments m = g.moments(u);
      optim::adam_step(master, grads[k], m, step, h);
    }
  }
  for (const Unit& u : g.units()) g.copy_master_to_params(u);
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
