// See flat_unit.h.

#include "zero/flat_unit.h"

#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/StorageImpl.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace zerotrain::zero {

const char* to_string(ParamState s) {
  switch (s) {
    case ParamState::kSharded: return "sharded (released)";
    case ParamState::kGathering: return "being gathered";
    case ParamState::kGathered: return "gathered";
  }
  return "?";
}

// Note [Releasing a unit frees its storage]
// A unit's parameters are views of its flat buffer (same StorageImpl), and
// autograd saves views of them (a Linear saves weight.t()), all sharing that
// StorageImpl. Releasing resizes the storage to 0 bytes instead of replacing
// the tensors: every view keeps its sizes, strides and version counter, reads
// nothing while sharded, and sees the gathered values again once the storage
// has its bytes back, which is what backward needs after a re-gather. The
// buffer must come from an allocator (at::zeros), not from external memory.

FlatUnit::FlatUnit(int index, std::string name, const UnitLayout& layout, std::vector<at::Tensor> params,
                   bool full_grads)
    : index_(index), name_(std::move(name)), layout_(layout), params_(std::move(params)) {
  TORCH_INTERNAL_ASSERT(params_.size() == layout_.params.size(), "unit '", name_, "': ", params_.size(),
                        " parameters for ", layout_.params.size(), " slots");
  TORCH_INTERNAL_ASSERT(!params_.empty(), "unit '", name_, "' has no parameters");
  const auto opts = params_.front().options().requires_grad(false);
  c10::NoGradGuard no_grad;
  flat_params_ = at::zeros({layout_.flat.padded_numel()}, opts);
  for (size_t k = 0; k < params_.size(); ++k) {
    at::Tensor& p = params_[k];
    at::Tensor slot = flat_params_.narrow(0, layout_.flat.slots()[k].offset, p.numel());
    slot.copy_(p.detach().reshape({-1}));
    p.set_data(slot.view(p.sizes()));
  }
  if (full_grads) {
    flat_grads_ = at::zeros({layout_.flat.padded_numel()}, opts);
    attach_grad_views();
  }
}

at::Tensor FlatUnit::grad_slot(int slot) const {
  TORCH_INTERNAL_ASSERT(flat_grads_.defined(), "unit '", name_, "' keeps no full gradients");
  const at::Tensor& p = params_.at(static_cast<size_t>(slot));
  return flat_grads_.narrow(0, layout_.flat.slots()[static_cast<size_t>(slot)].offset, p.numel())
      .view(p.sizes());
}

void FlatUnit::attach_grad_views() {
  if (!flat_grads_.defined()) return;
  for (size_t k = 0; k < params_.size(); ++k) {
    at::Tensor& p = params_[k];
    at::Tensor slot = grad_slot(static_cast<int>(k));
    if (p.grad().defined() && p.grad().data_ptr() == slot.data_ptr()) continue;
    p.mutable_grad() = slot;
  }
}

void FlatUnit::zero_grads() {
  c10::NoGradGuard no_grad;
  if (flat_grads_.defined()) {
    flat_grads_.zero_();
    attach_grad_views();
  } else {
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
  }
}

void FlatUnit::begin_gather() {
  TORCH_INTERNAL_ASSERT(param_state_ != ParamState::kGathering, "unit '", name_, "': gather while ",
                        to_string(param_state_));
  if (param_state_ == ParamState::kSharded) {
    // Note [Releasing a unit frees its storage]
    const c10::DeviceGuard device(flat_params_.device());
    c10::StorageImpl* s = flat_params_.storage().unsafeGetStorageImpl();
    const size_t bytes = static_cast<size_t>(flat_params_.numel()) * flat_params_.element_size();
    s->set_data_ptr_noswap(s->allocator()->allocate(bytes));
    s->set_nbytes(bytes);
  }
  param_state_ = ParamState::kGathering;
}

void FlatUnit::release() {
  TORCH_INTERNAL_ASSERT(param_state_ == ParamState::kGathered, "unit '", name_, "': release while ",
                        to_string(param_state_));
  free_storage(flat_params_);
  param_state_ = ParamState::kSharded;
}

void free_storage(const at::Tensor& t) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  TORCH_INTERNAL_ASSERT(s->allocator() != nullptr, "a storage without an allocator cannot be freed in place");
  s->set_data_ptr_noswap(c10::DataPtr(nullptr, t.device()));
  s->set_nbytes(0);
}

void FlatUnit::end_gather() {
  TORCH_INTERNAL_ASSERT(param_state_ == ParamState::kGathering, "unit '", name_, "': gather ended while ",
                        to_string(param_state_));
  param_state_ = ParamState::kGathered;
}

void FlatUnit::check_readable(const char* when) const {
  TORCH_CHECK(param_state_ == ParamState::kGathered, "zerotrain: unit '", name_, "' ", when,
              " while its parameters are ", to_string(param_state_));
}

}  // namespace zerotrain::zero
