#pragma once
// One unit's storage: the flat buffer its parameters are views into and, at
// stages 0 and 1, the flat gradient buffer their .grad are views into. The
// buffers are the unit's own (Note [The unit is a module subtree]), so a unit
// can be refilled, or later freed, without touching any other.

#include "zero/model_layout.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace zerotrain::zero {

/// Whether a unit's full parameters may be read. Checked on every transition:
/// the core refuses a forward while a unit is being refilled or is sharded.
enum class ParamState {
  kSharded,    // stage 3: flat_params has no storage (released); only the owned shard exists
  kGathering,  // an all-gather is writing flat_params; nothing may read it
  kGathered,   // flat_params holds every rank's current values
};
const char* to_string(ParamState s);

class FlatUnit {
 public:
  /// Copies `params` (in the layout's buffer order) into a new flat buffer and
  /// makes each parameter's .data a view of it. `full_grads`: also a flat
  /// gradient buffer, with every parameter's .grad a view of it.
  FlatUnit(int index, std::string name, const UnitLayout& layout, std::vector<at::Tensor> params,
           bool full_grads);

  int index() const noexcept { return index_; }
  /// The module path; "root" for the root unit.
  const std::string& name() const noexcept { return name_; }
  const UnitLayout& layout() const noexcept { return layout_; }
  /// The parameters, in buffer order (slot k is layout().params[k]).
  const std::vector<at::Tensor>& params() const noexcept { return params_; }

  const at::Tensor& flat_params() const noexcept { return flat_params_; }
  /// Stages 0/1: the unit's gradients, padded like flat_params; undefined otherwise.
  const at::Tensor& flat_grads() const noexcept { return flat_grads_; }
  bool has_full_grads() const noexcept { return flat_grads_.defined(); }
  /// Stages 0/1: slot k's place in flat_grads, shaped like the parameter.
  at::Tensor grad_slot(int slot) const;
  /// Stages 0/1: points every .grad at its slot again (after a module-level
  /// zero_grad(set_to_none) dropped the views).
  void attach_grad_views();
  /// Zeroes the full gradients (stages 0/1), or drops every .grad (stage 2).
  void zero_grads();

  ParamState param_state() const noexcept { return param_state_; }
  /// kGathered or kSharded -> kGathering (a sharded unit's storage is
  /// allocated again) -> kGathered, around an all-gather into flat_params.
  void begin_gather();
  void end_gather();
  /// Stage 3: kGathered -> kSharded. Frees the flat buffer's storage; the
  /// parameters keep their shapes and views, and read nothing until the next
  /// gather (Note [Releasing a unit frees its storage] in flat_unit.cpp).
  void release();
  /// Throws, naming the unit, unless its parameters may be read now.
  void check_readable(const char* when) const;

  /// The bytes of full parameters held now: the padded unit, or 0 when sharded.
  int64_t param_bytes() const { return static_cast<int64_t>(flat_params_.storage().nbytes()); }
  int64_t grad_bytes() const { return flat_grads_.defined() ? static_cast<int64_t>(flat_grads_.nbytes()) : 0; }

 private:
  int index_;
  std::string name_;
  UnitLayout layout_;
  std::vector<at::Tensor> params_;
  at::Tensor flat_params_;
  at::Tensor flat_grads_;
  ParamState param_state_ = ParamState::kGathered;
};

/// Frees `t`'s storage in place (0 bytes; every view keeps its sizes): see
/// Note [Releasing a unit frees its storage]. The storage must come from an allocator.
void free_storage(const at::Tensor& t);

}  // namespace zerotrain::zero
