#pragma once
// What save and load share about an engine: the parts of it a checkpoint
// reads and writes (EngineParts; the engine keeps its counters and hands them
// over as a value), which tensors of a rank go into its file and under which
// names, and the RNG states.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/shard_pieces.h"
#include "engine/model_access.h"
#include "zero/sharded_model.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace zerotrain::ckpt {

/// What a checkpoint reads and writes of an engine.
struct EngineParts {
  const Config& config;
  Communicator& comm;
  zero::ShardedModel& model;
  const detail::ModelAccess& access;
};

/// A tensor of a checkpoint file and the engine memory it comes from or goes to.
struct Slot {
  TensorSpec spec;
  at::Tensor data;  // 1-D (pieces) or shaped (module, RNG); on the engine's device
};

/// The buffer a state of unit `u` lives in (this rank's owned part).
at::Tensor state_buffer(const zero::OwnedState& owned, int u, PieceState state);

/// The pieces this rank writes, for `states`, in file order.
std::vector<Slot> piece_slots(const zero::ShardedModel& model, const std::vector<PieceState>& states);

/// "rng:cpu" and, on a CUDA engine, "rng:cuda": the default generators' states.
std::vector<Slot> rng_slots(c10::Device device);
void restore_rng(c10::Device device, const std::string& name, const at::Tensor& state);

}  // namespace zerotrain::ckpt
