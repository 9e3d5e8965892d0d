// See Note [Flat buffer layout] in flat_layout.h.

#include "zero/flat_layout.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace zerotrain::zero {

namespace {
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
}  // namespace

FlatLayout FlatLayout::build(const std::vector<int64_t>& numels, int world_size, int64_t align) {
  TORCH_CHECK(world_size >= 1, "zerotrain: world size must be at least 1, got ", world_size);
  TORCH_CHECK(align >= 1, "zerotrain: alignment must be at least 1 element, got ", align);
  FlatLayout l;
  l.world_size_ = world_size;
  l.align_ = align;
  int64_t end = 0;
  for (size_t i = 0; i < numels.size(); ++i) {
    TORCH_CHECK(numels[i] >= 0, "zerotrain: parameter ", i, " has a negative size");
    const int64_t offset = round_up(end, align);
    l.slots_.push_back({offset, numels[i]});
    l.param_numel_ += numels[i];
    end = offset + numels[i];
  }
  // At least one aligned chunk per rank, so that an empty group still has a layout.
  const int64_t padded = std::max(round_up(end, world_size * align), world_size * align);
  l.shard_numel_ = padded / world_size;
  return l;
}

std::pair<int64_t, int64_t> FlatLayout::shard_range(int rank) const {
  TORCH_CHECK(rank >= 0 && rank < world_size_, "zerotrain: rank ", rank, " is outside [0, ",
              world_size_, ")");
  return {rank * shard_numel_, (rank + 1) * shard_numel_};
}

std::vector<Segment> FlatLayout::segments(int rank) const {
  const auto [begin, end] = shard_range(rank);
  std::vector<Segment> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const int64_t lo = std::max(begin, slots_[i].offset);
    const int64_t hi = std::min(end, slots_[i].offset + slots_[i].numel);
    if (lo >= hi) continue;
    out.push_back({static_cast<int>(i), lo - slots_[i].offset, lo - begin, hi - lo});
  }
  return out;
}

}  // namespace zerotrain::zero
