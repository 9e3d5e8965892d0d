// See shard_pieces.h.

#include "checkpoint/shard_pieces.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace zerotrain::ckpt {

std::vector<OwnedPiece> owned_pieces(const zero::ModelLayout& layout, int rank) {
  std::vector<OwnedPiece> out;
  for (size_t ui = 0; ui < layout.units().size(); ++ui) {
    const int u = static_cast<int>(ui);
    const zero::UnitLayout& unit = layout.unit(u);
    for (const zero::Segment& s : layout.owned_segments(u, rank)) {
      OwnedPiece p;
      p.unit = u;
      p.param = unit.params[static_cast<size_t>(s.param)];
      p.param_offset = s.param_offset;
      p.unit_offset = s.shard_offset;
      p.owned_offset = unit.owned_offset + s.shard_offset;
      p.numel = s.numel;
      out.push_back(p);
    }
  }
  return out;
}

bool writes_pieces(const zero::ModelLayout& layout, int rank) { return layout.sharded() || rank == 0; }

std::vector<std::vector<PieceRef>> saved_pieces(const zero::ModelLayout& layout) {
  std::vector<std::vector<PieceRef>> out(static_cast<size_t>(layout.num_params()));
  for (int r = 0; r < layout.world_size(); ++r) {
    if (!writes_pieces(layout, r)) continue;
    for (const OwnedPiece& p : owned_pieces(layout, r))
      out[static_cast<size_t>(p.param)].push_back({r, p.param_offset, p.numel});
  }
  for (auto& pieces : out)
    std::sort(pieces.begin(), pieces.end(), [](const PieceRef& a, const PieceRef& b) { return a.offset < b.offset; });
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

}  // namespace zerotrain::ckpt
