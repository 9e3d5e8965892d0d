#pragma once
// The checksum of checkpoint files: XXH3-64, streaming. It detects accidental
// corruption (a flipped bit, a truncated or foreign file) at tens of GB/s, so
// verifying costs far less than reading; it is not a defence against tampering.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace zerotrain::ckpt {

class Checksum {
 public:
  Checksum();
  ~Checksum();
  Checksum(Checksum&&) noexcept;
  Checksum& operator=(Checksum&&) noexcept;

  void update(const void* data, size_t bytes);
  uint64_t digest() const;

  /// 16 lower-case hex digits, as the manifest stores it.
  static std::string to_hex(uint64_t digest);
  /// Throws on anything but 16 hex digits.
  static uint64_t from_hex(const std::string& hex);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace zerotrain::ckpt
