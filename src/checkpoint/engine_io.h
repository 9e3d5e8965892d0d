#pragma once
// What save and load share about an engine: which tensors of a rank go into
// its file (and under which names), the RNG states, and the module tensors
// (buffers and frozen parameters) that rank 0 saves whole.

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/shard_pieces.h"
#include "engine/engine_state.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace zerotrain::checkpoint {

/// A tensor of a checkpoint file and the engine memory it comes from or goes to.
struct Slot {
  TensorSpec spec;
  at::Tensor data;  // 1-D (pieces) or shaped (module, RNG); on the engine's device
};

at::ScalarType engine_model_dtype(const detail::EngineState& s);

/// The engine buffer a state of `unit` lives in (its owned part).
at::Tensor state_buffer(const zero::FlatParamGroup& g, const zero::Unit& unit, PieceState state);

/// The pieces this rank writes, for `states`, in file order.
std::vector<Slot> piece_slots(const detail::EngineState& s, const std::vector<PieceState>& states);

/// "rng:cpu" and, on a CUDA engine, "rng:cuda": the default generators' states.
std::vector<Slot> rng_slots(c10::Device device);
void restore_rng(c10::Device device, const std::string& name, const at::Tensor& state);

/// Buffers and frozen parameters by name, with their kind.
struct ModuleTensor {
  std::string name;
  std::string kind;  // "buffer" or "frozen_parameter"
  at::Tensor tensor;
};
std::vector<ModuleTensor> module_tensors(const torch::nn::Module& module);

}  // namespace zerotrain::checkpoint
