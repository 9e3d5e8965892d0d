// See Note [Where gradients live] in flat_group.h.

#include "zero/flat_group.h"

#include <zerotrain/comm.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace zerotrain::zero {

namespace {
std::vector<int64_t> numels_of(const std::vector<at::Tensor>& params) {
  std::vector<int64_t> n;
  n.reserve(params.size());
  for (const auto& p : params) n.push_back(p.numel());
  return n;
}
}  // namespace

FlatParamGroup::FlatParamGroup(GroupSpec spec, const GroupPlacement& placement, Communicator& comm)
    : spec_(std::move(spec)),
      placement_(placement),
      policy_(placement.policy),
      layout_(GroupLayout::build(numels_of(spec_.params), placement.world_size, placement.rank,
                                 placement.policy, placement.bucket_numel, placement.align)) {
  TORCH_INTERNAL_ASSERT(!spec_.params.empty(), "a parameter group needs parameters");
  TORCH_INTERNAL_ASSERT(spec_.names.size() == spec_.params.size());
  const at::Tensor& first = spec_.params.front();
  const auto opts = first.options().requires_grad(false);
  const at::ScalarType dtype = first.scalar_type();

  c10::NoGradGuard no_grad;
  flat_params_ = at::zeros({layout_.flat_numel()}, opts);
  for (int i = 0; i < layout_.num_params(); ++i) {
    at::Tensor& p = spec_.params[static_cast<size_t>(i)];
    at::Tensor slot = flat_params_.narrow(0, layout_.param_offset(i), p.numel());
    slot.copy_(p.detach().reshape({-1}));
    p.set_data(slot.view(p.sizes()));
  }
  // Every rank starts from rank 0's parameters, as DeepSpeed's engine does.
  comm.broadcast(flat_params_, 0).wait();

  if (policy_.gradients) {
    grad_shard_ = at::zeros({layout_.owned_numel()}, opts);
  } else {
    flat_grads_ = at::zeros({layout_.flat_numel()}, opts);
    attach_grad_views();
  }

  const auto f32 = opts.dtype(at::kFloat);
  master_aliases_params_ = dtype == at::kFloat && !layout_.sharded();
  if (master_aliases_params_) {
    master_ = flat_params_;
  } else {
    master_ = at::empty({layout_.owned_numel()}, f32);
    for (const Unit& u : units()) master(u).copy_(owned_params(u));
  }
  exp_avg_ = at::zeros({layout_.owned_numel()}, f32);
  exp_avg_sq_ = at::zeros({layout_.owned_numel()}, f32);
}

at::Tensor FlatParamGroup::unit_params(const Unit& u) const {
  return flat_params_.narrow(0, u.flat_offset, u.layout.padded_numel());
}

at::Tensor FlatParamGroup::unit_grads(const Unit& u) const {
  TORCH_INTERNAL_ASSERT(flat_grads_.defined(), "stage 2 keeps no full gradients");
  return flat_grads_.narrow(0, u.flat_offset, u.layout.padded_numel());
}

at::Tensor FlatParamGroup::owned_params(const Unit& u) const {
  const auto [b, e] = layout_.owned_range_in_flat(u);
  return flat_params_.narrow(0, b, e - b);
}

at::Tensor FlatParamGroup::owned_grads(const Unit& u) const {
  if (policy_.gradients) return grad_shard_.narrow(0, u.owned_offset, u.owned_numel);
  const auto [b, e] = layout_.owned_range_in_flat(u);
  return flat_grads_.narrow(0, b, e - b);
}

at::Tensor FlatParamGroup::master(const Unit& u) const {
  if (master_aliases_params_) return owned_params(u);
  return master_.narrow(0, u.owned_offset, u.owned_numel);
}

optim::Moments FlatParamGroup::moments(const Unit& u) const {
  return {exp_avg_.narrow(0, u.owned_offset, u.owned_numel),
          exp_avg_sq_.narrow(0, u.owned_offset, u.owned_numel)};
}

at::Tensor FlatParamGroup::grad_slot(int param) const {
  TORCH_INTERNAL_ASSERT(flat_grads_.defined(), "stage 2 keeps no full gradients");
  const at::Tensor& p = spec_.params.at(static_cast<size_t>(param));
  return flat_grads_.narrow(0, layout_.param_offset(param), p.numel()).view(p.sizes());
}

void FlatParamGroup::attach_grad_views() {
  if (!flat_grads_.defined()) return;
  for (int i = 0; i < layout_.num_params(); ++i) {
    at::Tensor& p = spec_.params[static_cast<size_t>(i)];
    at::Tensor slot = grad_slot(i);
    if (p.grad().defined() && p.grad().data_ptr() == slot.data_ptr()) continue;
    p.mutable_grad() = slot;
  }
}

void FlatParamGroup::zero_grads() {
  c10::NoGradGuard no_grad;
  if (flat_grads_.defined()) {
    flat_grads_.zero_();
    attach_grad_views();
  } else {
    grad_shard_.zero_();
    for (auto& p : spec_.params) p.mutable_grad() = at::Tensor();
  }
}

int64_t FlatParamGroup::master_bytes() const {
  return master_aliases_params_ ? 0 : static_cast<int64_t>(master_.nbytes());
}

int64_t FlatParamGroup::moment_bytes() const {
  return static_cast<int64_t>(exp_avg_.nbytes() + exp_avg_sq_.nbytes());
}

int64_t FlatParamGroup::grad_bytes() const {
  return static_cast<int64_t>(flat_grads_.defined() ? flat_grads_.nbytes() : grad_shard_.nbytes());
}

}  // namespace zerotrain::zero
