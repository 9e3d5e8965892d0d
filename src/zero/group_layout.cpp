// See Note [The unit is the bucket] in group_layout.h.

#include "zero/group_layout.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace zerotrain::zero {

GroupLayout GroupLayout::build(const std::vector<int64_t>& numels, int world_size, int rank,
                               ShardingPolicy policy, int64_t bucket_numel, int64_t align) {
  TORCH_CHECK(bucket_numel >= 1, "zerotrain: zero_optimization.reduce_bucket_size must be at least 1, got ",
              bucket_numel);
  TORCH_CHECK(rank >= 0 && rank < world_size, "zerotrain: rank ", rank, " is outside [0, ", world_size,
              ")");
  GroupLayout g;
  g.rank_ = rank;
  g.sharded_ = policy.optimizer_states;
  g.unit_of_param_.assign(numels.size(), -1);

  // Cut in reverse registration order, then put the units back in registration order.
  std::vector<std::pair<int, int>> runs;  // [first, last] inclusive
  int last = static_cast<int>(numels.size()) - 1;
  int64_t filled = 0;
  for (int p = last; p >= 0; --p) {
    if (filled > 0 && filled + numels[p] > bucket_numel) {
      runs.emplace_back(p + 1, last);
      last = p;
      filled = 0;
    }
    filled += numels[p];
  }
  if (last >= 0) runs.emplace_back(0, last);
  std::reverse(runs.begin(), runs.end());

  for (const auto& [first, end] : runs) {
    Unit u;
    u.first_param = first;
    u.num_params = end - first + 1;
    u.layout = FlatLayout::build(
        std::vector<int64_t>(numels.begin() + first, numels.begin() + end + 1), world_size, align);
    u.flat_offset = g.flat_numel_;
    u.owned_offset = g.owned_numel_;
    u.owned_numel = g.sharded_ ? u.layout.shard_numel() : u.layout.padded_numel();
    g.flat_numel_ += u.layout.padded_numel();
    g.owned_numel_ += u.owned_numel;
    g.param_numel_ += u.layout.param_numel();
    for (int p = first; p <= end; ++p) g.unit_of_param_[p] = static_cast<int>(g.units_.size());
    g.units_.push_back(std::move(u));
  }
  return g;
}

std::pair<int64_t, int64_t> GroupLayout::owned_range_in_flat(const Unit& unit) const {
  if (!sharded_) return {unit.flat_offset, unit.flat_offset + unit.layout.padded_numel()};
  const auto [b, e] = unit.layout.shard_range(rank_);
  return {unit.flat_offset + b, unit.flat_offset + e};
}

int64_t GroupLayout::param_offset(int param) const {
  const Unit& u = units_.at(static_cast<size_t>(unit_of(param)));
  return u.flat_offset + u.layout.slots().at(static_cast<size_t>(param - u.first_param)).offset;
}

}  // namespace zerotrain::zero
