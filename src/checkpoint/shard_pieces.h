#pragma once
// Between an engine's layout and a checkpoint's pieces (Note [A parameter's
// pieces] in manifest.h): which pieces a rank's owned buffers hold, the
// pieces every rank of a saved layout held, and the copies that fill a new
// layout's owned buffers from saved pieces. Pure arithmetic.

#include "checkpoint/manifest.h"
#include "zero/flat_group.h"

#include <cstdint>
#include <vector>

namespace zerotrain::checkpoint {

/// The part of parameter `param` inside this rank's owned part of `unit`.
struct OwnedPiece {
  int unit = 0;
  int param = 0;              // in the group
  int64_t param_offset = 0;   // first element inside the parameter
  int64_t unit_offset = 0;    // where it lies in the unit's owned part (master(u), moments(u))
  int64_t owned_offset = 0;   // where it lies in the group's owned buffers
  int64_t numel = 0;
};

/// Padding is never part of a piece.
std::vector<OwnedPiece> owned_pieces(const zero::GroupLayout& layout);

/// Whether `rank`'s pieces go into the checkpoint: at stage 0 every rank
/// holds the same full state, and rank 0 writes it.
bool writes_pieces(const zero::GroupLayout& layout, int rank);

/// For every parameter of `group`, the pieces each rank of `world_size`
/// writes, in parameter order (each list tiles the parameter).
std::vector<std::vector<PieceRef>> saved_pieces(const zero::FlatParamGroup& group, int world_size);

/// Elements [src_offset, src_offset + numel) of saved piece `source` go to
/// owned_offset (group-level) of the loading rank.
struct PieceCopy {
  PieceRef source;
  int64_t src_offset = 0;  // inside the saved piece
  int64_t owned_offset = 0;
  int64_t numel = 0;
};

/// The copies that fill `want` from `saved`'s pieces.
std::vector<PieceCopy> plan_copies(const ParamEntry& saved, const OwnedPiece& want);

}  // namespace zerotrain::checkpoint
