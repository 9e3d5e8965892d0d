// See shard_pieces.h.

#include "checkpoint/shard_pieces.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace zerotrain::checkpoint {

std::vector<OwnedPiece> owned_pieces(const zero::GroupLayout& layout) {
  std::vector<OwnedPiece> out;
  const auto& units = layout.units();
  for (size_t ui = 0; ui < units.size(); ++ui) {
    const zero::Unit& u = units[ui];
    const auto [begin, end] = layout.owned_range_in_flat(u);
    const auto& slots = u.layout.slots();
    for (int k = 0; k < u.num_params; ++k) {
      const int64_t start = u.flat_offset + slots[static_cast<size_t>(k)].offset;
      const int64_t stop = start + slots[static_cast<size_t>(k)].numel;
      const int64_t b = std::max(start, begin), e = std::min(stop, end);
      if (b >= e) continue;
      OwnedPiece p;
      p.unit = static_cast<int>(ui);
      p.param = u.first_param + k;
      p.param_offset = b - start;
      p.unit_offset = b - begin;
      p.owned_offset = u.owned_offset + p.unit_offset;
      p.numel = e - b;
      out.push_back(p);
    }
  }
  return out;
}

bool writes_pieces(const zero::GroupLayout& layout, int rank) { return layout.sharded() || rank == 0; }

std::vector<std::vector<PieceRef>> saved_pieces(const zero::FlatParamGroup& group, int world_size) {
  const zero::GroupPlacement& pl = group.placement();
  std::vector<int64_t> numels;
  for (const at::Tensor& p : group.params()) numels.push_back(p.numel());
  std::vector<std::vector<PieceRef>> out(numels.size());
  for (int r = 0; r < world_size; ++r) {
    const zero::GroupLayout layout =
        zero::GroupLayout::build(numels, world_size, r, pl.policy, pl.bucket_numel, pl.align);
    if (!writes_pieces(layout, r)) continue;
    for (const OwnedPiece& p : owned_pieces(layout))
      out[static_cast<size_t>(p.param)].push_back({r, p.param_offset, p.numel});
  }
  for (auto& pieces : out)
    std::sort(pieces.begin(), pieces.end(),
              [](const PieceRef& a, const PieceRef& b) { return a.offset < b.offset; });
  return out;
}

std::vector<PieceCopy> plan_copies(const ParamEntry& saved, const OwnedPiece& want) {
  std::vector<PieceCopy> out;
  const int64_t lo = want.param_offset, hi = want.param_offset + want.numel;
  for (const PieceRef& src : saved.pieces) {
    const int64_t b = std::max(lo, src.offset), e = std::min(hi, src.offset + src.numel);
    if (b >= e) continue;
    out.push_back({src, b - src.offset, want.owned_offset + (b - lo), e - b});
  }
  int64_t covered = 0;
  for (const PieceCopy& c : out) covered += c.numel;
  TORCH_INTERNAL_ASSERT(covered == want.numel, "pieces of '", saved.name, "' cover ", covered, " of ",
                        want.numel, " wanted elements");
  return out;
}

}  // namespace zerotrain::checkpoint
