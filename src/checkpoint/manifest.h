#pragma once
// The manifest of one checkpoint tag (`<dir>/<tag>/manifest.json`): what was
// saved, by whom, and where every byte of every parameter lies. It is the only
// file a reader needs to plan a load onto any world size and stage. See
// docs/checkpoints.md for the format.
//
// Note [A parameter's pieces]
// A rank's fp32 master weights and moments cover a shard of each unit, and a
// shard may start or end inside a parameter. The checkpoint therefore stores
// each rank's state as pieces of parameters: tensor "<state>:<name>:<offset>"
// in rank r's file holds elements [offset, offset + numel) of parameter
// <name>, flattened, for state master, exp_avg, exp_avg_sq (fp32) and, for a
// 16-bit model, model (the model dtype). The manifest lists each parameter's
// pieces with their rank. A loader on any world size and stage takes the
// elements its own shard needs from whichever pieces hold them; padding is
// never saved. At stage 0 every rank holds everything, so only rank 0 writes
// pieces.

#include <zerotrain/checkpoint.h>

#include "precision/loss_scaler.h"

#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zerotrain::ckpt {

inline constexpr int kFormatVersion = 1;
inline constexpr const char* kFormatName = "zerotrain-checkpoint";
inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kModuleFile = "module.safetensors";
inline constexpr const char* kLatestFile = "latest";

/// The per-element states a piece can hold.
enum class PieceState { kMaster, kExpAvg, kExpAvgSq, kModel };
const char* to_string(PieceState s);
at::ScalarType piece_dtype(PieceState s, at::ScalarType model_dtype);
/// The states every piece holds for a model of this dtype: master, exp_avg,
/// exp_avg_sq, and model for a 16-bit model.
std::vector<PieceState> piece_states(at::ScalarType model_dtype);

/// Elements [offset, offset + numel) of a parameter, in rank `rank`'s file.
struct PieceRef {
  int rank = 0;
  int64_t offset = 0;
  int64_t numel = 0;
};

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
  std::vector<PieceRef> pieces;  // by offset, tiling [0, numel)
};

struct GroupEntry {
  double lr = 0;
  double weight_decay = 0;
  std::vector<ParamEntry> params;  // registration order
};

/// A buffer or frozen parameter, saved whole by rank 0 in module.safetensors.
struct ModuleTensorEntry {
  std::string name;
  std::string kind;  // "buffer" or "frozen_parameter"
};

struct FileEntry {
  std::string name;  // relative to the tag directory
  uint64_t bytes = 0;
  uint64_t checksum = 0;  // XXH3-64 of the whole file
};

struct EngineCounters {
  int64_t global_steps = 0;
  int64_t micro_steps = 0;
  int64_t skipped_steps = 0;
  int64_t optimizer_steps = 0;  // applied updates: Adam's bias-correction step
  precision::LossScalerState loss_scaler;
  std::optional<int64_t> scheduler_last_batch_iteration;
};

struct Manifest {
  int format_version = kFormatVersion;
  std::string zerotrain_version;
  std::string torch_version;
  std::string tag;
  int world_size = 1;
  int zero_stage = 0;
  at::ScalarType model_dtype = at::kFloat;
  std::string optimizer;
  nlohmann::json config;
  nlohmann::json client_state = nlohmann::json::object();
  EngineCounters engine;
  std::vector<GroupEntry> groups;
  std::vector<ModuleTensorEntry> module_tensors;
  std::vector<FileEntry> files;  // every file of the tag except the manifest

  /// Whether pieces include the model-dtype copy (a 16-bit model).
  bool has_model_pieces() const { return model_dtype != at::kFloat; }
  std::vector<PieceState> piece_states() const { return ckpt::piece_states(model_dtype); }
  int64_t num_parameters() const;
  const FileEntry* file(const std::string& name) const;

  /// The JSON text, with a checksum of its own content.
  std::string to_text() const;
  /// Parses and validates; errors name `path` and the field.
  static Manifest parse(const std::string& text, const std::string& path);
};

std::string rank_file_name(int rank);
std::string piece_tensor_name(PieceState state, const std::string& param, int64_t offset);
const char* dtype_name(at::ScalarType dtype);  // "fp32", "bf16", "fp16"

}  // namespace zerotrain::ckpt
