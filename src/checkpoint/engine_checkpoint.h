#pragma once
// Saving and loading an engine's training state (Engine::save_checkpoint,
// load_checkpoint and save_16bit_model are thin wrappers of these). The
// engine hands over EngineParts and its counters as a value, and applies the
// counters a load returns itself.

#include <zerotrain/checkpoint.h>

#include "checkpoint/engine_io.h"
#include "checkpoint/manifest.h"

#include <optional>
#include <string>

namespace zerotrain::ckpt {

/// Collective. Writes `<dir>/<tag>/` atomically (Note [A save is atomic]) and
/// returns it.
std::string save_checkpoint(const EngineParts& e, const EngineCounters& counters, const std::string& dir,
                            const std::string& tag, const SaveCheckpointOptions& options);

/// Collective. Rank 0 writes every parameter and buffer to `<dir>/<filename>`.
std::string save_16bit_model(const EngineParts& e, const std::string& dir, const std::string& filename);

struct LoadResult {
  LoadedCheckpoint info;
  EngineCounters counters;           // as saved
  at::ScalarType saved_dtype = at::kFloat;
  bool optimizer_states = false;     // master weights and moments were loaded
  /// gradient_accumulation_steps in the saved config (absent in hand-made manifests).
  std::optional<int64_t> saved_gas;
};

/// Collective. Verifies every file, then overwrites the model's state (Note
/// [A load changes nothing until every file is verified]) and the RNG.
/// nullopt, with a warning, when no tag is given and `<dir>/latest` does not
/// exist.
std::optional<LoadResult> load_checkpoint(const EngineParts& e, const std::string& dir, const std::string& tag,
                                          const LoadCheckpointOptions& options);

}  // namespace zerotrain::ckpt
