#pragma once
// Where each parameter of a group lives in the group's flat buffer, and which
// part of the buffer each rank owns. Pure arithmetic: the engine, the
// optimizer step, the memory report and checkpoint re-sharding all read it.
//
// Note [Flat buffer layout]
// The parameters of one group (same dtype, same optimizer settings) lie back
// to back in one flat buffer, in registration order, each starting at a
// multiple of `align` elements. The buffer is padded at the end to a multiple
// of world_size * align, so that every rank's shard has the same length (equal
// chunks are what reduce-scatter and all-gather move) and starts aligned. Rank
// r owns [r * shard, (r + 1) * shard). A parameter may straddle shards; each
// rank sees the pieces of parameters inside its shard as Segments. Padding
// is never part of a segment, so it never reaches the optimizer or a norm.
// A stage only decides which of these buffers are sharded (ShardingPolicy):
// the layout is the same for stages 0 to 3.

#include <cstdint>
#include <utility>
#include <vector>

namespace zerotrain::zero {

/// One parameter's place in the flat buffer.
struct ParamSlot {
  int64_t offset = 0;  // elements from the start of the buffer
  int64_t numel = 0;
};

/// The piece of parameter `param` that lies inside one rank's shard.
struct Segment {
  int param = 0;
  int64_t param_offset = 0;  // where the piece starts inside the parameter
  int64_t shard_offset = 0;  // where it starts inside the shard
  int64_t numel = 0;
  bool operator==(const Segment& o) const {
    return param == o.param && param_offset == o.param_offset && shard_offset == o.shard_offset &&
           numel == o.numel;
  }
};

class FlatLayout {
 public:
  /// `numels` in registration order; `align` in elements (>= 1).
  static FlatLayout build(const std::vector<int64_t>& numels, int world_size, int64_t align = 1);

  int world_size() const noexcept { return world_size_; }
  int64_t align() const noexcept { return align_; }
  /// Sum of the parameters' sizes, without any padding.
  int64_t param_numel() const noexcept { return param_numel_; }
  /// The buffer's length: parameters, alignment gaps and end padding.
  int64_t padded_numel() const noexcept { return shard_numel_ * world_size_; }
  int64_t shard_numel() const noexcept { return shard_numel_; }
  const std::vector<ParamSlot>& slots() const noexcept { return slots_; }

  /// [begin, end) of rank's shard in the buffer.
  std::pair<int64_t, int64_t> shard_range(int rank) const;
  /// The parameter pieces inside rank's shard, in buffer order.
  std::vector<Segment> segments(int rank) const;

 private:
  int world_size_ = 1;
  int64_t align_ = 1;
  int64_t param_numel_ = 0;
  int64_t shard_numel_ = 0;
  std::vector<ParamSlot> slots_;
};

}  // namespace zerotrain::zero
