#pragma once
// Reading a checkpoint directory: tags, the manifest, and files read whole in
// one pass that both verifies them (size and checksum against the manifest)
// and copies the byte ranges a caller asked for. Errors name the file and
// what is wrong with it.

#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"

#include <cstdint>
#include <string>
#include <vector>

namespace zerotrain::ckpt {

/// Throws unless `tag` can name a directory: not empty, no '/', no leading '.'.
void check_tag(const std::string& tag);

/// Tag directories under `dir` that hold a manifest, sorted.
std::vector<std::string> list_tags(const std::string& dir);

/// `<dir>/<tag>/manifest.json`, parsed and validated.
Manifest read_manifest(const std::string& tag_dir);

/// Opens `<tag_dir>/<entry.name>` and checks that it exists and has the
/// manifest's size (cheap: no data is read).
InputFile open_checked(const std::string& tag_dir, const FileEntry& entry);

/// A range of a file to copy into memory during a streaming pass.
struct CopyJob {
  uint64_t file_offset = 0;
  uint64_t bytes = 0;
  void* dst = nullptr;
};

/// Reads `file` from start to end once, hashing it and copying every job's
/// range; then checks the checksum against `entry`. Jobs may come in any order.
void stream_file(const InputFile& file, const FileEntry& entry, std::vector<CopyJob> jobs);

/// The header of a safetensors file of the checkpoint, checked to hold
/// `expected` tensors with their dtype and shape.
SafetensorsHeader read_checked_header(const InputFile& file, const std::vector<TensorSpec>& expected);

}  // namespace zerotrain::ckpt
