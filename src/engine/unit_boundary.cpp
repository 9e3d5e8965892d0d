// The non-template half of include/zerotrain/unit_module.h (the wrapper's triggers),
// the before-backward hooks on a unit's outputs, and the policy constructors.
// See Note [The four triggers] in src/zero/sharded_model.h.

#include <zerotrain/unit_module.h>

#include "zero/forward_context.h"

#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace zerotrain {

void attach_before_backward(const std::weak_ptr<UnitTriggers>& triggers, int unit,
                            const std::vector<at::Tensor>& outputs) {
  for (const at::Tensor& out : outputs) {
    if (!out.defined() || !out.requires_grad()) continue;
    // Runs before autograd computes anything from this output's gradient.
    out.register_hook([triggers, unit](const at::Tensor&) {
      if (auto t = triggers.lock()) t->before_backward(unit);
    });
  }
}

void leave_unit(const std::shared_ptr<UnitTriggers>& triggers, int unit, const std::vector<at::Tensor>& outputs) {
  if (!triggers) return;
  triggers->after_forward(unit);
  // Note [Forwards inside activation checkpointing]: a recomputed unit had its
  // before-backward trigger when it was entered.
  if (c10::GradMode::is_enabled() && zero::current_forward_kind() != zero::ForwardKind::kRecompute)
    attach_before_backward(triggers, unit, outputs);
}

WrapPolicy WrapPolicy::by_module_type(std::vector<std::string> type_names) {
  WrapPolicy p;
  p.kind = Kind::kModuleTypes;
  p.module_types = std::move(type_names);
  return p;
}

WrapPolicy WrapPolicy::by_size(int64_t max_unit_numel) {
  TORCH_CHECK(max_unit_numel >= 1, "zerotrain: WrapPolicy::by_size needs a bound of at least 1 element, got ",
              max_unit_numel);
  WrapPolicy p;
  p.kind = Kind::kSize;
  p.max_unit_numel = max_unit_numel;
  return p;
}

WrapPolicy WrapPolicy::marked_only() {
  WrapPolicy p;
  p.kind = Kind::kMarkedOnly;
  return p;
}

namespace detail {

UnitBoundary::~UnitBoundary() = default;

void UnitBoundary::attach(std::weak_ptr<UnitTriggers> triggers, int unit, checkpointing::CheckpointOptions options,
                          bool recompute_all) {
  triggers_ = std::move(triggers);
  unit_ = unit;
  options_ = std::move(options);
  if (recompute_all) recompute_ = true;
}

void UnitBoundary::recompute_unsupported() const {
  TORCH_CHECK(false, "zerotrain: unit ", unit_, " is recomputed (activation checkpointing), but its layer's "
              "forward does not map tensors to one tensor; checkpoint inside the layer with "
              "zerotrain::checkpointing::checkpoint instead");
}

std::shared_ptr<UnitTriggers> UnitBoundary::enter() const {
  std::shared_ptr<UnitTriggers> t = triggers_.lock();
  if (t) t->before_forward(unit_);
  return t;
}

void UnitBoundary::leave(const std::shared_ptr<UnitTriggers>& triggers,
                         const std::vector<at::Tensor>& outputs) const {
  leave_unit(triggers, unit_, outputs);
}

}  // namespace detail

}  // namespace zerotrain
