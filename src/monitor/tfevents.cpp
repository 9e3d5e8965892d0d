// See tfevents.h.
//
// Note [The TensorBoard event file format]
// A file whose name contains "tfevents" holds TFRecords. Each record is
//   uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// little-endian, where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
// The data is a serialized `Event` message (tensorflow/core/util/event.proto):
//   double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
// with Summary { repeated Value value = 1; } and
//   Value { string tag = 1; float simple_value = 2; }.
// The first event of a file carries file_version "brain.Event:2". Only these
// fields are written, so a small protobuf encoder suffices; TensorBoard reads
// simple_value scalars directly. tests/monitor/read_tfevents.py checks a file
// with TensorBoard's own reader.

#include "monitor/tfevents.h"

#include <c10/util/Exception.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace zerotrain::monitor {
namespace {

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

uint32_t masked_crc(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Protocol-buffer wire format: varints, and tagged fields.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
template <typename T>
void put_fixed(std::string& out, int field, T v) {  // wire types 1 (64-bit) and 5 (32-bit)
  put_key(out, field, sizeof(T) == 8 ? 1 : 5);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

std::string event_header(int64_t step, double wall_time) {
  std::string e;
  put_fixed(e, 1, wall_time);
  if (step != 0) {
    put_key(e, 2, 0);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

std::string host_name() {
  char buf[256] = {};
  return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string("localhost");
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + host_name() +
          "." + std::to_string(getpid()) + ".zerotrain";
  file_ = std::fopen(path_.c_str(), "wb");
  TORCH_CHECK(file_ != nullptr, "zerotrain: tensorboard: cannot create ", path_, ": ", std::strerror(errno));
  std::string e = event_header(0, now);
  put_bytes(e, 3, "brain.Event:2");
  write_record(e);
  flush();
}

EventFileWriter::~EventFileWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void EventFileWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string v;
  put_bytes(v, 1, tag);
  put_fixed(v, 2, static_cast<float>(value));
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e = event_header(step, wall_time);
  put_bytes(e, 5, summary);
  write_record(e);
}

void EventFileWriter::flush() {
  TORCH_CHECK(std::fflush(file_) == 0, "zerotrain: tensorboard: cannot write ", path_, ": ",
              std::strerror(errno));
}

void EventFileWriter::write_record(const std::string& data) {
  const uint64_t length = data.size();
  const uint32_t length_crc = masked_crc(&length, sizeof length);
  const uint32_t data_crc = masked_crc(data.data(), data.size());
  const bool ok = std::fwrite(&length, sizeof length, 1, file_) == 1 &&
                  std::fwrite(&length_crc, sizeof length_crc, 1, file_) == 1 &&
                  std::fwrite(data.data(), 1, data.size(), file_) == data.size() &&
                  std::fwrite(&data_crc, sizeof data_crc, 1, file_) == 1;
  TORCH_CHECK(ok, "zerotrain: tensorboard: cannot write ", path_, ": ", std::strerror(errno));
}

}  // namespace zerotrain::monitor
