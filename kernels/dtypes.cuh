#pragma once
// Element access by dtype inside kernels: load widens to float, store rounds
// to nearest even. NoCopy is the "no parameter copy" output.

#include "kernels/optim_math.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace zerotrain::kernels {

struct F32 {
  static constexpr bool kEnabled = true;
  using T = float;
  static __device__ __forceinline__ float to_float(T x) { return x; }
  static __device__ __forceinline__ T from_float(float f) { return f; }
  static __device__ __forceinline__ float load(const T* x, int64_t i) { return x[i]; }
  static __device__ __forceinline__ void store(T* x, int64_t i, float f) { x[i] = f; }
};
struct BF16 {
  static constexpr bool kEnabled = true;
  using T = __nv_bfloat16;
  static __device__ __forceinline__ float to_float(T x) { return __bfloat162float(x); }
  static __device__ __forceinline__ T from_float(float f) { return __float2bfloat16_rn(f); }
  static __device__ __forceinline__ float load(const T* x, int64_t i) { return to_float(x[i]); }
  static __device__ __forceinline__ void store(T* x, int64_t i, float f) { x[i] = from_float(f); }
};
struct F16 {
  static constexpr bool kEnabled = true;
  using T = __half;
  static __device__ __forceinline__ float to_float(T x) { return __half2float(x); }
  static __device__ __forceinline__ T from_float(float f) { return __float2half_rn(f); }
  static __device__ __forceinline__ float load(const T* x, int64_t i) { return to_float(x[i]); }
  static __device__ __forceinline__ void store(T* x, int64_t i, float f) { x[i] = from_float(f); }
};
struct NoCopy {
  static constexpr bool kEnabled = false;
  using T = float;
  static __device__ __forceinline__ T from_float(float f) { return f; }
  static __device__ __forceinline__ void store(T*, int64_t, float) {}
};

/// Calls f(Elem{}) with the element type of `d` (a generic lambda takes it as auto).
template <class F>
void dispatch_dtype(DType d, F&& f) {
  switch (d) {
    case DType::kFloat32: return f(F32{});
    case DType::kBFloat16: return f(BF16{});
    case DType::kFloat16: return f(F16{});
  }
}

/// As dispatch_dtype, with NoCopy when there is no output copy.
template <class F>
void dispatch_copy(bool has_copy, DType d, F&& f) {
  if (!has_copy) return f(NoCopy{});
  dispatch_dtype(d, static_cast<F&&>(f));
}

inline bool valid_dtype(DType d) {
  return d == DType::kFloat32 || d == DType::kBFloat16 || d == DType::kFloat16;
}

}  // namespace zerotrain::kernels
