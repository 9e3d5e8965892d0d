#pragma once
// Where every parameter lives in its unit's flat buffer, and which part of
// each unit a rank owns. Pure arithmetic on sizes, like FlatLayout: the core,
// the optimizer step, the reports and checkpoint re-sharding read it, and a
// checkpoint rebuilds it for every rank of a saved run.
//
// Note [Optimizer groups run over units]
// Each unit has its own FlatLayout (Note [Flat buffer layout]) and a rank
// owns one shard of every unit (stages 1-3) or every unit whole (stage 0).
// A rank's owned parts of all units lie back to back in its owned buffers
// (fp32 master weights, moments, the stage-2 gradient shard), in unit order.
// Inside a unit the parameters are laid out by optimizer group, then in
// registration order, so the elements of one group in one unit form a single
// run of the owned buffers: an optimizer group's update is one tensor per
// unit, whatever the units are. Alignment gaps inside a run hold zeros in the
// parameters, gradients and moments alike, which Adam leaves at zero.

#include "zero/flat_layout.h"

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace zerotrain::zero {

struct UnitLayout {
  std::vector<int> params;   // model parameter indices, in buffer order
  FlatLayout flat;           // over `params`, padded to world_size equal shards
  int64_t owned_offset = 0;  // where a rank's part of this unit starts in its owned buffers
  int64_t owned_numel = 0;   // the unit's shard, or the whole unit when nothing is sharded
};

struct ParamPlace {
  int unit = -1;
  int slot = -1;  // position in UnitLayout::params
};

/// Elements [begin, begin + numel) of unit `unit`'s owned part.
struct OwnedRun {
  int unit = 0;
  int64_t begin = 0;
  int64_t numel = 0;
};

class ModelLayout {
 public:
  /// `unit_params[u]`: unit u's parameters in buffer order; `numels`: every
  /// model parameter's size. `sharded`: a rank owns one shard of each unit
  /// (ShardingPolicy::optimizer_states), else every unit whole.
  static ModelLayout build(const std::vector<std::vector<int>>& unit_params,
                           const std::vector<int64_t>& numels, int world_size, bool sharded,
                           int64_t align);

  const std::vector<UnitLayout>& units() const noexcept { return units_; }
  const UnitLayout& unit(int u) const { return units_.at(static_cast<size_t>(u)); }
  const ParamPlace& place(int param) const { return places_.at(static_cast<size_t>(param)); }
  int num_params() const noexcept { return static_cast<int>(places_.size()); }
  int world_size() const noexcept { return world_size_; }
  bool sharded() const noexcept { return sharded_; }
  /// Elements of a rank's owned buffers (the same on every rank).
  int64_t owned_numel() const noexcept { return owned_numel_; }
  /// Sum of the parameters' sizes, without padding.
  int64_t param_numel() const noexcept { return param_numel_; }
  /// Sum of the units' padded flat buffers.
  int64_t padded_numel() const noexcept { return padded_numel_; }

  /// Where parameter `param` starts in its unit's flat buffer.
  int64_t param_offset(int param) const;
  /// [begin, end) of `rank`'s owned part of unit `u`, in the unit's flat buffer.
  std::pair<int64_t, int64_t> owned_range(int u, int rank) const;
  /// The parameter pieces in `rank`'s owned part of unit `u`: Segment::param is
  /// the slot in the unit, shard_offset is relative to the owned part.
  std::vector<Segment> owned_segments(int u, int rank) const;
  /// The runs of `rank`'s owned parts that hold elements of `params` (one
  /// optimizer group's parameters, contiguous in every unit's buffer order),
  /// one per unit at most. See Note [Optimizer groups run over units].
  std::vector<OwnedRun> owned_runs(const std::vector<int>& params, int rank) const;

 private:
  std::vector<UnitLayout> units_;
  std::vector<ParamPlace> places_;
  int world_size_ = 1;
  bool sharded_ = false;
  int64_t owned_numel_ = 0;
  int64_t param_numel_ = 0;
  int64_t padded_numel_ = 0;
};

}  // namespace zerotrain::zero
