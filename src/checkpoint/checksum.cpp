// See checksum.h. xxHash is header-only here (Debian's libxxhash-dev), inlined
// into this one file so nothing links against it.

#include "checkpoint/checksum.h"

#include <c10/util/Exception.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>

namespace zerotrain::ckpt {

struct Checksum::State {
  XXH3_state_t* xxh = nullptr;
  State() : xxh(XXH3_createState()) {
    TORCH_CHECK(xxh != nullptr, "zerotrain: out of memory for a checksum state");
    XXH3_64bits_reset(xxh);
  }
  ~State() { XXH3_freeState(xxh); }
};

Checksum::Checksum() : state_(std::make_unique<State>()) {}
Checksum::~Checksum() = default;
Checksum::Checksum(Checksum&&) noexcept = default;
Checksum& Checksum::operator=(Checksum&&) noexcept = default;

void Checksum::update(const void* data, size_t bytes) {
  if (bytes > 0) XXH3_64bits_update(state_->xxh, data, bytes);
}

uint64_t Checksum::digest() const { return XXH3_64bits_digest(state_->xxh); }

std::string Checksum::to_hex(uint64_t digest) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(digest));
  return buf;
}

uint64_t Checksum::from_hex(const std::string& hex) {
  TORCH_CHECK(hex.size() == 16 && hex.find_first_not_of("0123456789abcdef") == std::string::npos,
              "zerotrain: '", hex, "' is not a 16-digit hex checksum");
  return std::stoull(hex, nullptr, 16);
}

}  // namespace zerotrain::ckpt
