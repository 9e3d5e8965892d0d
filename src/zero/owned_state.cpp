// See Note [Where gradients live] in owned_state.h.

#include "zero/owned_state.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace zerotrain::zero {

OwnedState::OwnedState(const ModelLayout& layout, std::vector<FlatUnit>& units, int rank, bool grad_shard,
                       bool param_shard, const at::TensorOptions& opts)
    : layout_(layout), units_(units), rank_(rank) {
  const at::TensorOptions f32 = opts.dtype(at::kFloat);
  if (grad_shard) grad_shard_ = at::zeros({layout_.owned_numel()}, opts);
  // The padding of a shard is gathered with it: zeros, never read as values.
  if (param_shard) param_shard_ = at::zeros({layout_.owned_numel()}, opts);
  master_aliases_params_ = opts.dtype() == at::kFloat && !layout_.sharded();
  if (!master_aliases_params_) master_ = at::zeros({layout_.owned_numel()}, f32);
  exp_avg_ = at::zeros({layout_.owned_numel()}, f32);
  exp_avg_sq_ = at::zeros({layout_.owned_numel()}, f32);
}

void OwnedState::take_values(int u) {
  const FlatUnit& U = units_.at(static_cast<size_t>(u));
  U.check_readable("gave its values to the optimizer state");
  c10::NoGradGuard no_grad;
  const auto [b, e] = layout_.owned_range(u, rank_);
  if (param_shard_.defined()) part(param_shard_, u).copy_(U.flat_params().narrow(0, b, e - b));
  if (!master_aliases_params_) master(u).copy_(owned_params(u));
}

at::Tensor OwnedState::part(const at::Tensor& buffer, int u) const {
  const UnitLayout& l = layout_.unit(u);
  return buffer.narrow(0, l.owned_offset, l.owned_numel);
}

at::Tensor OwnedState::owned_params(int u) const {
  if (param_shard_.defined()) return part(param_shard_, u);
  const auto [b, e] = layout_.owned_range(u, rank_);
  return units_.at(static_cast<size_t>(u)).flat_params().narrow(0, b, e - b);
}

at::Tensor OwnedState::owned_grads(int u) const {
  if (grad_shard_.defined()) return part(grad_shard_, u);
  const auto [b, e] = layout_.owned_range(u, rank_);
  return units_.at(static_cast<size_t>(u)).flat_grads().narrow(0, b, e - b);
}

at::Tensor OwnedState::master(int u) const {
  return master_aliases_params_ ? owned_params(u) : part(master_, u);
}

optim::Moments OwnedState::moments(int u) const { return {part(exp_avg_, u), part(exp_avg_sq_, u)}; }

void OwnedState::zero_grad_shard() {
  if (!grad_shard_.defined()) return;
  c10::NoGradGuard no_grad;
  grad_shard_.zero_();
}

void OwnedState::copy_master_to_params() {
  if (master_aliases_params_) return;
  c10::NoGradGuard no_grad;
  for (size_t u = 0; u < units_.size(); ++u) owned_params(static_cast<int>(u)).copy_(master(static_cast<int>(u)));
}

int64_t OwnedState::master_bytes() const {
  return master_aliases_params_ ? 0 : static_cast<int64_t>(master_.nbytes());
}
int64_t OwnedState::moment_bytes() const {
  return static_cast<int64_t>(exp_avg_.nbytes() + exp_avg_sq_.nbytes());
}
int64_t OwnedState::param_shard_bytes() const {
  return param_shard_.defined() ? static_cast<int64_t>(param_shard_.nbytes()) : 0;
}

int64_t OwnedState::grad_shard_bytes() const {
  return grad_shard_.defined() ? static_cast<int64_t>(grad_shard_.nbytes()) : 0;
}

}  // namespace zerotrain::zero
