// See Note [Where gradients live] in owned_state.h.

#include "zero/owned_state.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace zerotrain::zero {

OwnedState::OwnedState(const ModelLayout& layout, std::vector<FlatUnit>& units, int rank, bool grad_shard,
                       bool param_shard, const at::TensorOptions& opts, const OffloadPlan& offload)
    : layout_(layout), units_(units), rank_(rank), offload_(offload) {
  TORCH_INTERNAL_ASSERT(!offload.optimizer || layout_.sharded(), "optimizer offload needs ZeRO stage 1 or above");
  TORCH_INTERNAL_ASSERT(!offload.params || (param_shard && offload.optimizer),
                        "parameter offload needs stage 3 and optimizer offload");
  // Note [Offload keeps the step on the host].
  const at::TensorOptions host =
      opts.device(at::kCPU).pinned_memory(offload.pin_memory && opts.device().type() != at::kCPU);
  const at::TensorOptions f32 = (offload.optimizer ? host : opts).dtype(at::kFloat);
  const int64_t n = layout_.owned_numel();
  if (grad_shard) grad_shard_ = at::zeros({n}, opts);
  // The padding of a shard is gathered with it: zeros, never read as values.
  if (param_shard) param_shard_ = at::zeros({n}, offload.params ? host : opts);
  master_aliases_params_ = opts.dtype() == at::kFloat && !layout_.sharded();
  if (!master_aliases_params_) master_ = at::zeros({n}, f32);
  exp_avg_ = at::zeros({n}, f32);
  exp_avg_sq_ = at::zeros({n}, f32);
  if (offload.optimizer) {
    host_grads_ = at::zeros({n}, f32);
    if (!offload.params) host_staging_ = at::zeros({n}, host);
  }
}

void OwnedState::take_values(int u) {
  const FlatUnit& U = units_.at(static_cast<size_t>(u));
  U.check_readable("gave its values to the optimizer state");
  c10::NoGradGuard no_grad;
  const auto [b, e] = layout_.owned_range(u, rank_);
  if (param_shard_.defined()) part(param_shard_, u).copy_(U.flat_params().narrow(0, b, e - b));
  if (!master_aliases_params_) master(u).copy_(owned_params(u));
  if (host_staging_.defined()) part(host_staging_, u).copy_(owned_params(u));
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
  for (size_t u = 0; u < units_.size(); ++u) {
    const int ui = static_cast<int>(u);
    owned_params(ui).copy_(master(ui));
    // The update rewrites every staged element before publishing it; this
    // keeps staging equal to the parameters between steps all the same.
    if (host_staging_.defined()) part(host_staging_, ui).copy_(owned_params(ui));
  }
}

// ---- Note [Offload keeps the step on the host] ----

c10::Device OwnedState::optimizer_device() const { return exp_avg_.device(); }

at::Tensor OwnedState::step_grads(int u) const {
  return host_grads_.defined() ? part(host_grads_, u) : owned_grads(u);
}

at::Tensor OwnedState::step_param_copies(int u) const {
  return host_staging_.defined() ? part(host_staging_, u) : owned_params(u);
}

void OwnedState::grads_reduced(int u) {
  if (!host_grads_.defined()) return;
  c10::NoGradGuard no_grad;
  // A blocking copy: the host reads these in the step, and which stream the
  // reduction retired on is not pinned down yet (streams and events: [gpu]).
  part(host_grads_, u).copy_(owned_grads(u));
}

void OwnedState::publish(int u, int64_t begin, int64_t n) {
  if (!host_staging_.defined()) return;
  c10::NoGradGuard no_grad;
  // Blocking, on the update's copy thread (zero::update), so the next tile
  // computes meanwhile and the staging tile is free again when this returns.
  owned_params(u).narrow(0, begin, n).copy_(part(host_staging_, u).narrow(0, begin, n));
}

at::Tensor OwnedState::gather_input(int u) {
  if (!offload_.params) return owned_params(u);
  const FlatUnit& U = units_.at(static_cast<size_t>(u));
  const auto [b, e] = layout_.owned_range(u, rank_);
  at::Tensor slot = U.flat_params().narrow(0, b, e - b);
  c10::NoGradGuard no_grad;
  slot.copy_(owned_params(u));
  return slot;
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

int64_t OwnedState::offload_buffer_bytes() const {
  return (host_grads_.defined() ? static_cast<int64_t>(host_grads_.nbytes()) : 0) +
         (host_staging_.defined() ? static_cast<int64_t>(host_staging_.nbytes()) : 0);
}

int64_t OwnedState::host_bytes() const {
  int64_t b = offload_buffer_bytes();
  if (offload_.optimizer) b += master_bytes() + moment_bytes();
  if (offload_.params) b += param_shard_bytes();
  return b;
}

int64_t OwnedState::grad_shard_bytes() const {
  return grad_shard_.defined() ? static_cast<int64_t>(grad_shard_.nbytes()) : 0;
}

}  // namespace zerotrain::zero
