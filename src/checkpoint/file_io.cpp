// See file_io.h.

#include "checkpoint/file_io.h"

#include <c10/util/Exception.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

namespace zerotrain::ckpt {

namespace {
std::string reason() { return std::strerror(errno); }
}  // namespace

OutputFile::OutputFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TORCH_CHECK(fd_ >= 0, "zerotrain: cannot create '", path_, "': ", reason());
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OutputFile::write(const void* data, size_t bytes) {
  TORCH_INTERNAL_ASSERT(fd_ >= 0, "write after close: ", path_);
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    TORCH_CHECK(n > 0, "zerotrain: writing '", path_, "' failed after ", written_, " bytes: ", reason());
    p += n;
    bytes -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void OutputFile::sync_and_close() {
  TORCH_INTERNAL_ASSERT(fd_ >= 0, "sync after close: ", path_);
  TORCH_CHECK(::fsync(fd_) == 0, "zerotrain: fsync of '", path_, "' failed: ", reason());
  const int fd = fd_;
  fd_ = -1;
  TORCH_CHECK(::close(fd) == 0, "zerotrain: closing '", path_, "' failed: ", reason());
}

InputFile::InputFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd_ >= 0, "zerotrain: cannot open '", path_, "': ", reason());
  struct stat st {};
  TORCH_CHECK(::fstat(fd_, &st) == 0, "zerotrain: cannot stat '", path_, "': ", reason());
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::InputFile(InputFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(uint64_t offset, void* out, size_t bytes) const {
  TORCH_CHECK(offset + bytes <= size_, "zerotrain: '", path_, "' is truncated: reading ", bytes,
              " bytes at offset ", offset, " needs ", offset + bytes, " bytes but the file has ", size_);
  char* p = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    TORCH_CHECK(n > 0, "zerotrain: reading '", path_, "' at offset ", offset, " failed: ",
                n == 0 ? std::string("unexpected end of file") : reason());
    p += n;
    bytes -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_directories(const std::string& path) {
  TORCH_CHECK(!path.empty(), "zerotrain: empty directory path");
  std::string prefix;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    prefix = path.substr(0, pos);
    if (prefix.empty() || is_directory(prefix)) continue;
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      TORCH_CHECK(false, "zerotrain: cannot create directory '", prefix, "': ", reason());
  }
  TORCH_CHECK(is_directory(path), "zerotrain: '", path, "' exists and is not a directory");
}

void fsync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, "zerotrain: cannot open directory '", path, "': ", reason());
  const int rc = ::fsync(fd);
  const std::string why = rc == 0 ? "" : reason();
  ::close(fd);
  TORCH_CHECK(rc == 0, "zerotrain: fsync of directory '", path, "' failed: ", why);
}

namespace {
int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  return (type == FTW_DP ? ::rmdir(path) : ::unlink(path)) == 0 ? 0 : -1;
}
}  // namespace

void remove_tree(const std::string& path) {
  if (!path_exists(path)) return;
  if (!is_directory(path)) {
    TORCH_CHECK(::unlink(path.c_str()) == 0, "zerotrain: cannot remove '", path, "': ", reason());
    return;
  }
  TORCH_CHECK(::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0,
              "zerotrain: cannot remove '", path, "': ", reason());
}

std::string replaced_path(const std::string& to) {
  const size_t slash = to.rfind('/');
  const std::string parent = slash == std::string::npos ? "" : to.substr(0, slash + 1);
  return parent + "." + to.substr(slash == std::string::npos ? 0 : slash + 1) + ".replaced";
}

std::string existing_or_replaced(const std::string& path) {
  if (path_exists(path)) return path;
  const std::string aside = replaced_path(path);
  return path_exists(aside) ? aside : path;
}

namespace {

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

void rename_checked(const std::string& from, const std::string& to) {
  TORCH_CHECK(::rename(from.c_str(), to.c_str()) == 0, "zerotrain: cannot rename '", from, "' to '", to, "': ",
              reason());
}

}  // namespace

// Note [Replacing without an atomic exchange]
// Some file systems (older NFS, some FUSE and overlay mounts) refuse
// renameat2's RENAME_EXCHANGE with EINVAL, ENOSYS or EOPNOTSUPP. Then the old
// `to` is first renamed aside to `.<name>.replaced`, the new content renamed
// to `to`, and the old copy removed: two atomic renames, each fsynced. A
// process killed between them leaves `to` missing and its previous complete
// content at `.<name>.replaced`; readers take that copy
// (existing_or_replaced), so `latest` still names a loadable tag, and the
// next replace of `to` cleans it up. Nothing is lost at any moment; the one
// difference from the exchange is that for that instant a reader that does
// not know the convention sees no `to`.
void replace_path(const std::string& from, const std::string& to) {
  const std::string aside = replaced_path(to);
  if (path_exists(to)) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
      remove_tree(from);  // the old content
      return;
    }
    const int err = errno;
    TORCH_CHECK(err == EINVAL || err == ENOSYS || err == EOPNOTSUPP, "zerotrain: cannot exchange '", from,
                "' with '", to, "': ", std::strerror(err));
    remove_tree(aside);  // a stale copy from an earlier replace: `to` is complete
    rename_checked(to, aside);
    fsync_directory(parent_of(to));
  }
  rename_checked(from, to);
  if (path_exists(aside)) {
    fsync_directory(parent_of(to));
    remove_tree(aside);
  }
}

void write_file_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  OutputFile f(tmp);
  f.write(content.data(), content.size());
  f.sync_and_close();
  TORCH_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "zerotrain: cannot rename '", tmp, "' to '",
              path, "': ", reason());
  const size_t slash = path.rfind('/');
  fsync_directory(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

std::string read_small_file(const std::string& path, size_t max_bytes) {
  InputFile f(path);
  TORCH_CHECK(f.size() <= max_bytes, "zerotrain: '", path, "' has ", f.size(),
              " bytes, more than the ", max_bytes, " expected");
  std::string out(static_cast<size_t>(f.size()), '\0');
  if (!out.empty()) f.read_at(0, out.data(), out.size());
  return out;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace zerotrain::ckpt
