#pragma once
// POSIX file handling for checkpoints: whole writes, positional reads that
// name the file when it is short, fsync of files and directories, atomic
// replacement, and directory removal. Every failure throws c10::Error naming
// the path and the system's reason. (std::filesystem::remove_all is avoided:
// it crashed with the toolchain's libstdc++ in this project's CI image.)

#include <cstddef>
#include <cstdint>
#include <string>

namespace zerotrain::ckpt {

/// A file opened for writing from the start (created or truncated).
class OutputFile {
 public:
  explicit OutputFile(std::string path);
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();

  void write(const void* data, size_t bytes);
  /// fsync, then close; the file is durable when this returns.
  void sync_and_close();
  uint64_t bytes_written() const noexcept { return written_; }
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

/// A file opened for positional reads.
class InputFile {
 public:
  explicit InputFile(std::string path);
  InputFile(InputFile&& other) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile();

  uint64_t size() const noexcept { return size_; }
  /// Exactly `bytes` at `offset`, or an error saying the file is truncated.
  void read_at(uint64_t offset, void* out, size_t bytes) const;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
/// mkdir -p.
void make_directories(const std::string& path);
void fsync_directory(const std::string& path);
/// Removes a file or a directory tree; a missing path is not an error.
void remove_tree(const std::string& path);
/// Renames `from` to `to`. When `to` exists, the two are exchanged atomically
/// (renameat2 RENAME_EXCHANGE) and the old `to`, now at `from`, is removed, so
/// `to` names either the old or the new content at every moment. Note
/// [Replacing without an atomic exchange] (file_io.cpp) says what happens on
/// a file system that refuses the exchange.
void replace_path(const std::string& from, const std::string& to);
/// `<parent>/.<name>.replaced`: where replace_path keeps the old `to` while
/// it moves the new one in, when the file system refuses an exchange.
std::string replaced_path(const std::string& to);
/// `path`; or, when only the copy that replace_path set aside exists (the
/// process was killed between its two renames), that copy.
std::string existing_or_replaced(const std::string& path);
/// Writes `content` to `path` through a temporary file, fsync and rename.
void write_file_atomically(const std::string& path, const std::string& content);
/// The whole content of a small file (at most `max_bytes`).
std::string read_small_file(const std::string& path, size_t max_bytes = size_t{1} << 30);
std::string join_path(const std::string& dir, const std::string& name);

}  // namespace zerotrain::ckpt
