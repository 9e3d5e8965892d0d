#pragma once
// Training-state checkpoints: what Engine::save_checkpoint / load_checkpoint
// take and return, and the offline tools (inspect, export) that read a
// checkpoint directory without an engine. The format and its guarantees are
// in docs/checkpoints.md.
//
//   engine.save_checkpoint("ckpt");                  // ckpt/global_step<N>/, then ckpt/latest
//   auto loaded = engine.load_checkpoint("ckpt");    // any world size, any stage 0-2
//   zerotrain::export_checkpoint("ckpt", "model.safetensors", {});

#include <zerotrain/config.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace zerotrain {

struct SaveCheckpointOptions {
  /// Stored in the manifest and returned by load_checkpoint (DeepSpeed's client_state).
  nlohmann::json client_state = nlohmann::json::object();
  /// Point `<dir>/latest` at this tag once it is complete.
  bool save_latest = true;
};

/// DeepSpeed's load_checkpoint flags.
struct LoadCheckpointOptions {
  /// Every buffer and frozen parameter of the checkpoint must exist in the
  /// model and the reverse; otherwise the ones both have are loaded.
  bool load_module_strict = true;
  /// false: the weights, counters and schedule are loaded; the fp32 master
  /// weights are rebuilt from the saved model weights and the moments are kept.
  bool load_optimizer_states = true;
  bool load_lr_scheduler_states = true;
  /// Only the weights (and buffers); the engine's counters, loss scale,
  /// schedule and moments are kept.
  bool load_module_only = false;
};

struct LoadedCheckpoint {
  std::string path;  // <dir>/<tag>
  std::string tag;
  nlohmann::json client_state;
  int saved_world_size = 1;
  int saved_zero_stage = 0;
  /// The saved RNG states were restored (only when the world size is the same).
  bool rng_restored = false;
};

/// The tag `<dir>/latest` names; throws when it is missing or empty.
std::string latest_tag(const std::string& dir);

enum class ExportFormat { kSafetensors, kTorch };

struct ExportOptions {
  std::string tag;  // empty: the latest
  /// The dtype of the exported parameters (from the fp32 master weights).
  /// Buffers keep their saved dtype.
  DType dtype = DType::kFloat32;
  ExportFormat format = ExportFormat::kSafetensors;
};

struct ExportReport {
  std::string path;
  int64_t tensors = 0;
  uint64_t bytes = 0;
  /// The largest tensor assembled in memory: export holds one at a time.
  uint64_t largest_tensor_bytes = 0;
};

/// Writes the consolidated weights of a checkpoint under the model's own
/// parameter names, verifying every file's checksum first and holding one
/// tensor in memory at a time. The safetensors file loads with Python's
/// `safetensors`, the torch file with `torch.load` (weights_only works).
ExportReport export_checkpoint(const std::string& dir, const std::string& out,
                               const ExportOptions& options = {});

struct CheckpointFileStatus {
  std::string name;
  uint64_t bytes = 0;
  bool ok = true;
  std::string problem;  // empty when ok
};

struct CheckpointInfo {
  std::string dir;
  std::vector<std::string> tags;  // every tag directory with a manifest
  std::string latest;             // empty when there is no `latest`
  std::string tag;                // the one inspected
  int format_version = 0;
  std::string zerotrain_version;
  std::string torch_version;
  int world_size = 0;
  int zero_stage = 0;
  std::string model_dtype;
  std::string optimizer;
  int64_t global_steps = 0;
  int64_t skipped_steps = 0;
  int64_t num_parameters = 0;
  uint64_t total_bytes = 0;
  bool verified = false;  // checksums were checked (and `files` says how they fared)
  std::vector<CheckpointFileStatus> files;
  bool all_ok() const;
  std::string to_string() const;
};

/// Reads the manifest of `tag` (empty: the latest) and, with `verify`, checks
/// every file's size and checksum. Problems are reported, not thrown, except
/// for a missing or unreadable manifest.
CheckpointInfo inspect_checkpoint(const std::string& dir, const std::string& tag = "",
                                  bool verify = true);

}  // namespace zerotrain
