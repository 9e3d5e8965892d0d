#pragma once
// TensorBoard event files, written directly: a TFRecord stream of serialized
// `tensorflow.Event` protocol buffers holding scalar summaries. See
// Note [The TensorBoard event file format].

#include <cstdint>
#include <cstdio>
#include <string>

namespace zerotrain::monitor {

/// CRC-32C (Castagnoli), as TFRecord frames use it.
uint32_t crc32c(const void* data, size_t size);

/// Appends scalar events to `<dir>/events.out.tfevents.<time>.<host>.<pid>.zerotrain`.
class EventFileWriter {
 public:
  /// Creates the file and writes the header event. Throws naming the path.
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace zerotrain::monitor
