// See safetensors.h.

#include "checkpoint/safetensors.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

namespace zerotrain::ckpt {

namespace {

// safetensors caps the header at 100 MB; so do we, before allocating it.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  at::ScalarType dtype;
  const char* name;
};
constexpr std::array<DTypeName, 10> kDTypes{{{at::kFloat, "F32"},
                                             {at::kBFloat16, "BF16"},
                                             {at::kHalf, "F16"},
                                             {at::kDouble, "F64"},
                                             {at::kLong, "I64"},
                                             {at::kInt, "I32"},
                                             {at::kShort, "I16"},
                                             {at::kChar, "I8"},
                                             {at::kByte, "U8"},
                                             {at::kBool, "BOOL"}}};

bool dtype_from_name(const std::string& name, at::ScalarType& out) {
  for (const DTypeName& d : kDTypes)
    if (name == d.name) {
      out = d.dtype;
      return true;
    }
  return false;
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t TensorSpec::nbytes() const {
  return static_cast<uint64_t>(numel()) * c10::elementSize(dtype);
}

const char* safetensors_dtype_name(at::ScalarType dtype) {
  for (const DTypeName& d : kDTypes)
    if (d.dtype == dtype) return d.name;
  TORCH_CHECK(false, "zerotrain: safetensors has no name for dtype ", dtype);
}

const TensorRecord* SafetensorsHeader::find(const std::string& name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

SafetensorsHeader read_safetensors_header(const InputFile& file) {
  const std::string& path = file.path();
  TORCH_CHECK(file.size() >= 8, "zerotrain: '", path, "' is truncated: ", file.size(),
              " bytes, too short for a safetensors header");
  unsigned char len_bytes[8];
  file.read_at(0, len_bytes, 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  TORCH_CHECK(header_len <= kMaxHeaderBytes && header_len <= file.size() - 8, "zerotrain: '", path,
              "' is not a valid safetensors file: its header claims ", header_len,
              " bytes and the file has ", file.size());
  std::string text(static_cast<size_t>(header_len), '\0');
  file.read_at(8, text.data(), text.size());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "zerotrain: '", path, "' has a corrupt safetensors header: ", e.what());
  }
  TORCH_CHECK(j.is_object(), "zerotrain: '", path, "': the safetensors header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  for (const auto& item : j.items()) {
    const std::string& name = item.key();  // not a structured binding: the lambda below captures it
    const nlohmann::json& v = item.value();
    if (name == "__metadata__") {
      TORCH_CHECK(v.is_object(), "zerotrain: '", path, "': __metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        TORCH_CHECK(s.is_string(), "zerotrain: '", path, "': __metadata__.", k, " is not a string");
        h.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    const auto bad = [&](const std::string& what) {
      TORCH_CHECK(false, "zerotrain: '", path, "': tensor '", name, "' ", what);
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad("lacks dtype, shape or data_offsets");
    TensorRecord r;
    r.spec.name = name;
    if (!v["dtype"].is_string() || !dtype_from_name(v["dtype"].get<std::string>(), r.spec.dtype))
      bad("has an unknown dtype " + v["dtype"].dump());
    if (!v["shape"].is_array()) bad("has a shape that is not a list");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) bad("has a bad shape " + v["shape"].dump());
      r.spec.shape.push_back(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      bad("has bad data_offsets " + off.dump());
    r.begin = off[0].get<uint64_t>();
    r.end = off[1].get<uint64_t>();
    if (r.end < r.begin || r.end - r.begin != r.spec.nbytes())
      bad("has data_offsets " + off.dump() + " that do not match its dtype and shape");
    h.tensors.push_back(std::move(r));
  }
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const TensorRecord& a, const TensorRecord& b) { return a.begin < b.begin; });
  uint64_t expected = 0;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const TensorRecord& r = h.tensors[i];
    TORCH_CHECK(r.begin == expected, "zerotrain: '", path, "': tensor '", r.spec.name,
                "' starts at data byte ", r.begin, " where ", expected, " was expected");
    expected = r.end;
    h.index.emplace(r.spec.name, i);
  }
  TORCH_CHECK(h.data_start + expected == file.size(), "zerotrain: '", path, "' is ",
              (h.data_start + expected > file.size() ? "truncated" : "longer than its header says"),
              ": the header describes ", h.data_start + expected, " bytes and the file has ",
              file.size());
  return h;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : file_(std::move(path)) {
  nlohmann::json j = nlohmann::json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  for (const TensorSpec& t : tensors) {
    TORCH_CHECK(!j.contains(t.name), "zerotrain: two tensors named '", t.name, "' in '", file_.path(), "'");
    const uint64_t n = t.nbytes();
    j[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {data_bytes_, data_bytes_ + n}}};
    data_bytes_ += n;
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  unsigned char len_bytes[8];
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
  file_.write(len_bytes, 8);
  file_.write(text.data(), text.size());
  checksum_.update(len_bytes, 8);
  checksum_.update(text.data(), text.size());
}

void SafetensorsWriter::write(const void* data, size_t bytes) {
  TORCH_INTERNAL_ASSERT(data_written_ + bytes <= data_bytes_, "more data than the header describes for '",
                        file_.path(), "'");
  file_.write(data, bytes);
  checksum_.update(data, bytes);
  data_written_ += bytes;
}

FileDigest SafetensorsWriter::finish() {
  TORCH_INTERNAL_ASSERT(data_written_ == data_bytes_, "'", file_.path(), "': ", data_written_,
                        " of ", data_bytes_, " data bytes written");
  const FileDigest d{file_.bytes_written(), checksum_.digest()};
  file_.sync_and_close();
  return d;
}

}  // namespace zerotrain::ckpt
