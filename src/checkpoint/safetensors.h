#pragma once
// The safetensors format (huggingface/safetensors): an 8-byte little-endian
// header length, a JSON header mapping each tensor name to its dtype, shape
// and [begin, end) byte range in the data that follows, and an optional
// "__metadata__" map of strings. Nothing in it is code, so reading it cannot
// execute anything. The writer streams: the header is written first from the
// tensors' specs, then the data tensor by tensor, hashed on the way.

#include "checkpoint/checksum.h"
#include "checkpoint/file_io.h"

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace zerotrain::ckpt {

struct TensorSpec {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;
  int64_t numel() const;
  uint64_t nbytes() const;
};

/// A tensor's place in a file; offsets are relative to the start of the data.
struct TensorRecord {
  TensorSpec spec;
  uint64_t begin = 0;
  uint64_t end = 0;
};

/// "F32", "BF16", ...; throws for dtypes safetensors has no name for.
const char* safetensors_dtype_name(at::ScalarType dtype);

struct SafetensorsHeader {
  std::vector<TensorRecord> tensors;  // in data order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data
  /// nullptr when absent.
  const TensorRecord* find(const std::string& name) const;
  std::unordered_map<std::string, size_t> index;
};

/// Reads and validates the header: sizes, dtypes, and that the byte ranges
/// tile the data exactly up to the end of the file. Errors name the file.
SafetensorsHeader read_safetensors_header(const InputFile& file);

/// Size and checksum of a finished file, as the manifest records them.
struct FileDigest {
  uint64_t bytes = 0;
  uint64_t checksum = 0;
};

class SafetensorsWriter {
 public:
  /// Creates `path` and writes the header for `tensors`, whose data must then
  /// be written in this order.
  SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  /// The next `bytes` of data: any split of the tensors' bytes is allowed.
  void write(const void* data, size_t bytes);
  /// fsync and close; every tensor's bytes must have been written.
  FileDigest finish();

 private:
  OutputFile file_;
  Checksum checksum_;
  uint64_t data_bytes_ = 0;
  uint64_t data_written_ = 0;
};

}  // namespace zerotrain::ckpt
