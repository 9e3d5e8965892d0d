#pragma once
// Between an engine's layout and a checkpoint's pieces (Note [A parameter's
// pieces] in manifest.h): which pieces a rank's owned buffers hold, the
// pieces every rank of a saved layout held, and the copies that fill a new
// layout's owned buffers from saved pieces. Pure arithmetic.

#include "checkpoint/manifest.h"
#include "zero/model_layout.h"

#include <cstdint>
#include <vector>

namespace zerotrain::ckpt {

/// The part of parameter `param` inside a rank's owned part of unit `unit`.
struct OwnedPiece {
  int unit = 0;
  int param = 0;             // model parameter index
  int64_t param_offset = 0;  // first element inside the parameter
  int64_t unit_offset = 0;   // where it lies in the unit's owned part (master(u), moments(u))
  int64_t owned_offset = 0;  // where it lies in the rank's owned buffers
  int64_t numel = 0;
};

/// Padding is never part of a piece. In unit order, then buffer order.
std::vector<OwnedPiece> owned_pieces(const zero::ModelLayout& layout, int rank);

/// Whether `rank`'s pieces go into the checkpoint: at stage 0 every rank
/// holds the same full state, and rank 0 writes it.
bool writes_pieces(const zero::ModelLayout& layout, int rank);

/// For every model parameter, the pieces each rank of the layout writes, by
/// offset (each list tiles the parameter).
std::vector<std::vector<PieceRef>> saved_pieces(const zero::ModelLayout& layout);

/// Elements [src_offset, src_offset + numel) of saved piece `source` go to
/// owned_offset of the loading rank's owned buffers.
struct PieceCopy {
  PieceRef source;
  int64_t src_offset = 0;  // inside the saved piece
  int64_t owned_offset = 0;
  int64_t numel = 0;
};

/// The copies that fill `want` from `saved`'s pieces.
std::vector<PieceCopy> plan_copies(const ParamEntry& saved, const OwnedPiece& want);

}  // namespace zerotrain::ckpt
