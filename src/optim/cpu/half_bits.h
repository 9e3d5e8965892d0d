#pragma once
// fp32 <-> bf16 / fp16 conversions on raw 16-bit patterns, branch-free so that
// the CPU optimizer loops vectorise at every instruction-set width. Both round
// to nearest even and agree bit for bit with c10::BFloat16 / c10::Half (the
// tests check every 16-bit pattern and a sweep of floats).

#include <cstdint>
#include <cstring>

namespace zerotrain::optim::cpu {

inline float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t bits_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bf16_to_float(uint16_t h) { return float_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = bits_from_float(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(f != f ? 0x7FC0u : rounded);  // quiet NaN
}

// IEEE half: the exponent is rebiased with one multiply for normal numbers and
// subnormals are produced by adding to a magic float, so no branch is needed.
inline float fp16_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = float_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = float_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t magnitude =
      two_w < (1u << 27) ? bits_from_float(denormalized) : bits_from_float(normalized);
  return float_from_bits(sign | magnitude);
}

inline uint16_t float_to_fp16(float f) {
  // Scaling up then down rounds the mantissa to 10 bits at the right place,
  // and overflows to inf exactly where half does.
  float base = ((f < 0 ? -f : f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = bits_from_float(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = float_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t b = bits_from_float(base);
  const uint32_t nonsign = ((b >> 13) & 0x00007C00u) + (b & 0x00000FFFu);
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

}  // namespace zerotrain::optim::cpu
