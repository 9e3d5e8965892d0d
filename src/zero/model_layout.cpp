// See Note [Optimizer groups run over units] in model_layout.h.

#include "zero/model_layout.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>

namespace zerotrain::zero {

ModelLayout ModelLayout::build(const std::vector<std::vector<int>>& unit_params,
                               const std::vector<int64_t>& numels, int world_size, bool sharded,
                               int64_t align) {
  ModelLayout m;
  m.world_size_ = world_size;
  m.sharded_ = sharded;
  m.places_.assign(numels.size(), ParamPlace{});
  for (size_t u = 0; u < unit_params.size(); ++u) {
    UnitLayout ul;
    ul.params = unit_params[u];
    std::vector<int64_t> sizes;
    for (size_t k = 0; k < ul.params.size(); ++k) {
      const int p = ul.params[k];
      TORCH_INTERNAL_ASSERT(p >= 0 && p < static_cast<int>(numels.size()), "parameter index ", p);
      TORCH_INTERNAL_ASSERT(m.places_[static_cast<size_t>(p)].unit < 0, "parameter ", p, " in two units");
      m.places_[static_cast<size_t>(p)] = {static_cast<int>(u), static_cast<int>(k)};
      sizes.push_back(numels[static_cast<size_t>(p)]);
    }
    ul.flat = FlatLayout::build(sizes, world_size, align);
    ul.owned_offset = m.owned_numel_;
    ul.owned_numel = sharded ? ul.flat.shard_numel() : ul.flat.padded_numel();
    m.owned_numel_ += ul.owned_numel;
    m.param_numel_ += ul.flat.param_numel();
    m.padded_numel_ += ul.flat.padded_numel();
    m.units_.push_back(std::move(ul));
  }
  for (size_t p = 0; p < m.places_.size(); ++p)
    TORCH_INTERNAL_ASSERT(m.places_[p].unit >= 0, "parameter ", p, " is in no unit");
  return m;
}

int64_t ModelLayout::param_offset(int param) const {
  const ParamPlace& pl = place(param);
  return unit(pl.unit).flat.slots().at(static_cast<size_t>(pl.slot)).offset;
}

std::pair<int64_t, int64_t> ModelLayout::owned_range(int u, int rank) const {
  const FlatLayout& f = unit(u).flat;
  if (!sharded_) return {0, f.padded_numel()};
  return f.shard_range(rank);
}

std::vector<Segment> ModelLayout::owned_segments(int u, int rank) const {
  const FlatLayout& f = unit(u).flat;
  if (sharded_) return f.segments(rank);
  std::vector<Segment> all;
  for (size_t i = 0; i < f.slots().size(); ++i)
    if (f.slots()[i].numel > 0) all.push_back({static_cast<int>(i), 0, f.slots()[i].offset, f.slots()[i].numel});
  return all;
}

std::vector<OwnedRun> ModelLayout::owned_runs(const std::vector<int>& params, int rank) const {
  // Per unit: the span of the group's slots, which must be contiguous.
  struct Span {
    int first_slot = std::numeric_limits<int>::max();
    int last_slot = -1;
    int count = 0;
  };
  std::vector<Span> spans(units_.size());
  for (int p : params) {
    const ParamPlace& pl = place(p);
    Span& s = spans[static_cast<size_t>(pl.unit)];
    s.first_slot = std::min(s.first_slot, pl.slot);
    s.last_slot = std::max(s.last_slot, pl.slot);
    ++s.count;
  }
  std::vector<OwnedRun> runs;
  for (size_t u = 0; u < units_.size(); ++u) {
    const Span& s = spans[u];
    if (s.count == 0) continue;
    TORCH_INTERNAL_ASSERT(s.last_slot - s.first_slot + 1 == s.count,
                          "an optimizer group's parameters are not contiguous in unit ", u);
    const auto& slots = units_[u].flat.slots();
    const int64_t lo = slots[static_cast<size_t>(s.first_slot)].offset;
    const int64_t hi = slots[static_cast<size_t>(s.last_slot)].offset + slots[static_cast<size_t>(s.last_slot)].numel;
    const auto [b, e] = owned_range(static_cast<int>(u), rank);
    const int64_t begin = std::max(lo, b), end = std::min(hi, e);
    if (begin >= end) continue;
    runs.push_back({static_cast<int>(u), begin - b, end - begin});
  }
  return runs;
}

}  // namespace zerotrain::zero
