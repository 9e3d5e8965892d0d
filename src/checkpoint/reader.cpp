// See reader.h.

#include "checkpoint/reader.h"

#include "checkpoint/checksum.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#include <dirent.h>

namespace zerotrain::ckpt {

namespace {
// Large enough to amortise each read call, small enough to stay in cache-friendly territory.
constexpr uint64_t kStreamChunk = uint64_t{8} << 20;
}  // namespace

void check_tag(const std::string& tag) {
  TORCH_CHECK(!tag.empty() && tag.find('/') == std::string::npos && tag[0] != '.' && tag != kLatestFile,
              "zerotrain: '", tag, "' cannot be a checkpoint tag: a tag names a directory, so it is "
              "not empty, has no '/', does not start with '.' and is not 'latest'");
}

std::vector<std::string> list_tags(const std::string& dir) {
  std::vector<std::string> tags;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return tags;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    if (path_exists(join_path(join_path(dir, name), kManifestFile))) tags.push_back(name);
  }
  ::closedir(d);
  std::sort(tags.begin(), tags.end());
  return tags;
}

Manifest read_manifest(const std::string& tag_dir) {
  const std::string path = join_path(tag_dir, kManifestFile);
  TORCH_CHECK(path_exists(path), "zerotrain: checkpoint manifest '", path, "' is missing",
              is_directory(tag_dir) ? " (an unfinished save leaves no tag directory; was this "
                                      "directory made by something else?)"
                                    : ": the tag directory does not exist");
  Manifest m = Manifest::parse(read_small_file(path), path);
  // A data file the manifest does not list came from elsewhere (another save,
  // another world size's rank files): the directory is not what was saved.
  DIR* d = ::opendir(tag_dir.c_str());
  TORCH_CHECK(d != nullptr, "zerotrain: cannot list checkpoint directory '", tag_dir, "'");
  std::string extra;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if ((ends_with(".safetensors") || ends_with(".pt")) && m.file(name) == nullptr) extra = name;
  }
  ::closedir(d);
  TORCH_CHECK(extra.empty(), "zerotrain: '", join_path(tag_dir, extra), "' is not listed in '", path,
              "': a data file from another save or another world size; remove it, or load from a clean copy");
  return m;
}

InputFile open_checked(const std::string& tag_dir, const FileEntry& entry) {
  const std::string path = join_path(tag_dir, entry.name);
  TORCH_CHECK(path_exists(path), "zerotrain: checkpoint file '", path, "' is missing");
  InputFile f(path);
  TORCH_CHECK(f.size() == entry.bytes, "zerotrain: checkpoint file '", path, "' is ",
              f.size() < entry.bytes ? "truncated" : "too long", ": it has ", f.size(),
              " bytes and the manifest says ", entry.bytes);
  return f;
}

void stream_file(const InputFile& file, const FileEntry& entry, std::vector<CopyJob> jobs) {
  std::sort(jobs.begin(), jobs.end(),
            [](const CopyJob& a, const CopyJob& b) { return a.file_offset < b.file_offset; });
  for (const CopyJob& j : jobs)
    TORCH_INTERNAL_ASSERT(j.file_offset + j.bytes <= file.size(), "copy beyond the end of ", file.path());
  std::vector<char> buf(static_cast<size_t>(std::min(kStreamChunk, std::max<uint64_t>(file.size(), 1))));
  Checksum sum;
  size_t first = 0;  // the first job that may still overlap
  for (uint64_t pos = 0; pos < file.size();) {
    const uint64_t n = std::min<uint64_t>(buf.size(), file.size() - pos);
    file.read_at(pos, buf.data(), static_cast<size_t>(n));
    sum.update(buf.data(), static_cast<size_t>(n));
    const uint64_t end = pos + n;
    while (first < jobs.size() && jobs[first].file_offset + jobs[first].bytes <= pos) ++first;
    for (size_t k = first; k < jobs.size() && jobs[k].file_offset < end; ++k) {
      const CopyJob& j = jobs[k];
      const uint64_t b = std::max(pos, j.file_offset), e = std::min(end, j.file_offset + j.bytes);
      if (b < e) std::memcpy(static_cast<char*>(j.dst) + (b - j.file_offset), buf.data() + (b - pos), e - b);
    }
    pos = end;
  }
  const uint64_t got = sum.digest();
  TORCH_CHECK(got == entry.checksum, "zerotrain: checkpoint file '", file.path(),
              "' is corrupt: its XXH3 checksum is ", Checksum::to_hex(got), " and the manifest says ",
              Checksum::to_hex(entry.checksum));
}

SafetensorsHeader read_checked_header(const InputFile& file, const std::vector<TensorSpec>& expected) {
  SafetensorsHeader h = read_safetensors_header(file);
  for (const TensorSpec& t : expected) {
    const TensorRecord* r = h.find(t.name);
    TORCH_CHECK(r != nullptr, "zerotrain: checkpoint file '", file.path(), "' lacks tensor '", t.name,
                "' that the manifest places there");
    TORCH_CHECK(r->spec.dtype == t.dtype && r->spec.shape == t.shape, "zerotrain: checkpoint file '",
                file.path(), "': tensor '", t.name, "' is ", r->spec.dtype, " of ", r->spec.numel(),
                " elements where the manifest implies ", t.dtype, " of ", t.numel());
  }
  return h;
}

}  // namespace zerotrain::ckpt
