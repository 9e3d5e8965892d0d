#pragma once
// How one parameter group is cut into communication units and where each
// unit lives in the group's flat buffers. Pure arithmetic, like FlatLayout.
//
// Note [The unit is the bucket]
// DeepSpeed fills buckets of reduce_bucket_size with whatever gradients are
// ready and all-reduces each bucket (each rank keeps the slices it owns),
// because a bucket of arbitrary parameters does not split into N equal,
// rank-owned chunks. zerotrain instead makes the bucket part of the layout:
// the group's parameters, taken in reverse registration order (the order
// backward produces their gradients), are cut into units of at most
// reduce_bucket_size elements (a larger parameter is a unit by itself), and
// every unit has its own FlatLayout padded to N equal shards. A unit's
// gradients are then one true reduce-scatter (Ψ_unit (N-1)/N on the wire, half
// of an all-reduce), and its parameters one all-gather. Rank r's shard of the
// group is the concatenation of its shards of every unit, so the fp32 master
// weights, the moments and the stage-2 gradient shard are each one contiguous
// buffer per group. Unit membership depends only on the parameter sizes and
// the bucket size, never on N; that is what lets a checkpoint re-shard onto
// another world size. Stage 3 keeps the same units and gathers them before
// forward instead of after the step.

#include <zerotrain/config.h>

#include "zero/flat_layout.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace zerotrain::zero {

/// A run of consecutive parameters of a group that is reduced and gathered as one.
struct Unit {
  int first_param = 0;  // in the group's registration order
  int num_params = 0;
  FlatLayout layout;       // over params [first_param, first_param + num_params)
  int64_t flat_offset = 0;   // where the unit starts in the group's flat buffers
  int64_t owned_offset = 0;  // where this rank's part starts in the group's owned buffers
  int64_t owned_numel = 0;   // the unit's shard, or the whole unit when nothing is sharded
};

class GroupLayout {
 public:
  /// `numels` in registration order; `bucket_numel` is reduce_bucket_size.
  /// What a rank owns follows `policy.optimizer_states`: a shard of every unit,
  /// or every unit whole (stage 0).
  static GroupLayout build(const std::vector<int64_t>& numels, int world_size, int rank,
                           ShardingPolicy policy, int64_t bucket_numel, int64_t align);

  const std::vector<Unit>& units() const noexcept { return units_; }
  int num_params() const noexcept { return static_cast<int>(unit_of_param_.size()); }
  int unit_of(int param) const { return unit_of_param_.at(static_cast<size_t>(param)); }
  /// Elements of the flat parameter (and stage 0/1 gradient) buffer.
  int64_t flat_numel() const noexcept { return flat_numel_; }
  /// Elements this rank owns: fp32 master weights, moments, stage-2 gradients.
  int64_t owned_numel() const noexcept { return owned_numel_; }
  /// Sum of the parameters' sizes, without padding.
  int64_t param_numel() const noexcept { return param_numel_; }
  int rank() const noexcept { return rank_; }
  bool sharded() const noexcept { return sharded_; }

  /// [begin, end) of this rank's owned part of `unit`, in the flat buffer.
  std::pair<int64_t, int64_t> owned_range_in_flat(const Unit& unit) const;
  /// Where parameter `param` starts in the flat buffer.
  int64_t param_offset(int param) const;

 private:
  std::vector<Unit> units_;
  std::vector<int> unit_of_param_;
  int64_t flat_numel_ = 0;
  int64_t owned_numel_ = 0;
  int64_t param_numel_ = 0;
  int rank_ = 0;
  bool sharded_ = false;
};

}  // namespace zerotrain::zero
