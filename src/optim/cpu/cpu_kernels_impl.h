// The bodies of the CPU optimizer kernels. Not a normal header: each
// cpu_kernels_<isa>.cpp defines ZEROTRAIN_CPU_ISA (the namespace) and includes
// this file once, compiled with that instruction set's flags. See Note [Every
// CPU instruction set gives the same bits] in cpu_kernels.h.

#ifndef ZEROTRAIN_CPU_ISA
#error "define ZEROTRAIN_CPU_ISA before including cpu_kernels_impl.h"
#endif

#include "optim/cpu/cpu_kernels.h"
#include "optim/cpu/half_bits.h"

#include <cmath>
#include <cstdint>

namespace zerotrain::optim::cpu::ZEROTRAIN_CPU_ISA {
namespace {

// Element access by dtype: load widens to float, store rounds to nearest even.
struct Fp32 {
  static constexpr bool kEnabled = true;
  using T = float;
  static float load(const T* x, int64_t i) { return x[i]; }
  static void store(T* x, int64_t i, float f) { x[i] = f; }
};
struct Bf16 {
  static constexpr bool kEnabled = true;
  using T = uint16_t;
  static float load(const T* x, int64_t i) { return bf16_to_float(x[i]); }
  static void store(T* x, int64_t i, float f) { x[i] = float_to_bf16(f); }
};
struct Fp16 {
  static constexpr bool kEnabled = true;
  using T = uint16_t;
  static float load(const T* x, int64_t i) { return fp16_to_float(x[i]); }
  static void store(T* x, int64_t i, float f) { x[i] = float_to_fp16(f); }
};
// No parameter copy.
struct NoCopy {
  static constexpr bool kEnabled = false;
  using T = uint16_t;
  static void store(T*, int64_t, float) {}
};

template <class G, class C>
void adam_loop(const AdamArgs& a, int64_t begin, int64_t end) {
  float* __restrict__ p = a.param;
  float* __restrict__ m = a.exp_avg;
  float* __restrict__ v = a.exp_avg_sq;
  const typename G::T* __restrict__ g = static_cast<const typename G::T*>(a.grad);
  typename C::T* __restrict__ out = static_cast<typename C::T*>(a.param_copy);
  const AdamScalars s = a.scalars;
  const float inv_scale = a.inv_scale;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    float pi = p[i], mi = m[i], vi = v[i];
    kernels::adam_update(pi, mi, vi, G::load(g, i) * inv_scale, s);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if constexpr (C::kEnabled) C::store(out, i, pi);
  }
}

template <class G>
void adam_copy_dispatch(const AdamArgs& a, int64_t begin, int64_t end) {
  if (a.param_copy == nullptr) return adam_loop<G, NoCopy>(a, begin, end);
  switch (a.copy_dtype) {
    case DType::kFloat32: return adam_loop<G, Fp32>(a, begin, end);
    case DType::kBFloat16: return adam_loop<G, Bf16>(a, begin, end);
    case DType::kFloat16: return adam_loop<G, Fp16>(a, begin, end);
  }
}

void adam(const AdamArgs& a, int64_t begin, int64_t end) {
  switch (a.grad_dtype) {
    case DType::kFloat32: return adam_copy_dispatch<Fp32>(a, begin, end);
    case DType::kBFloat16: return adam_copy_dispatch<Bf16>(a, begin, end);
    case DType::kFloat16: return adam_copy_dispatch<Fp16>(a, begin, end);
  }
}

// Fixed accumulator lanes: see Note [Every CPU instruction set gives the same bits].
constexpr int kLanes = 16;

double sum_lanes(const double (&acc)[kLanes]) {
  double total = 0.0;
  for (int j = 0; j < kLanes; ++j) total += acc[j];
  return total;
}

template <class G>
SquaredNorms lamb_prepare_loop(const LambPrepareArgs& a, int64_t begin, int64_t end) {
  const float* __restrict__ p = a.param;
  float* __restrict__ m = a.exp_avg;
  float* __restrict__ v = a.exp_avg_sq;
  float* __restrict__ u = a.update;
  const typename G::T* __restrict__ g = static_cast<const typename G::T*>(a.grad);
  const LambScalars s = a.scalars;
  const float inv_scale = a.inv_scale;
  double acc_p[kLanes] = {};
  double acc_u[kLanes] = {};
  // Element i + j goes to lane j; the last block may be shorter.
  for (int64_t i = begin; i < end; i += kLanes) {
    const int width = static_cast<int>(end - i < kLanes ? end - i : kLanes);
#pragma omp simd
    for (int j = 0; j < width; ++j) {
      const int64_t k = i + j;
      float mk = m[k], vk = v[k];
      const float uk = kernels::lamb_prepare_element(p[k], mk, vk, G::load(g, k) * inv_scale, s);
      m[k] = mk;
      v[k] = vk;
      u[k] = uk;
      acc_p[j] += static_cast<double>(p[k]) * p[k];
      acc_u[j] += static_cast<double>(uk) * uk;
    }
  }
  return {sum_lanes(acc_p), sum_lanes(acc_u)};
}

SquaredNorms lamb_prepare(const LambPrepareArgs& a, int64_t begin, int64_t end) {
  switch (a.grad_dtype) {
    case DType::kFloat32: return lamb_prepare_loop<Fp32>(a, begin, end);
    case DType::kBFloat16: return lamb_prepare_loop<Bf16>(a, begin, end);
    case DType::kFloat16: return lamb_prepare_loop<Fp16>(a, begin, end);
  }
  return {};
}

template <class C>
void lamb_apply_loop(const LambApplyArgs& a, int64_t begin, int64_t end) {
  float* __restrict__ p = a.param;
  const float* __restrict__ u = a.update;
  typename C::T* __restrict__ out = static_cast<typename C::T*>(a.param_copy);
  const float step_size = a.step_size;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    float pi = p[i];
    kernels::lamb_apply_element(pi, u[i], step_size);
    p[i] = pi;
    if constexpr (C::kEnabled) C::store(out, i, pi);
  }
}

void lamb_apply(const LambApplyArgs& a, int64_t begin, int64_t end) {
  if (a.param_copy == nullptr) return lamb_apply_loop<NoCopy>(a, begin, end);
  switch (a.copy_dtype) {
    case DType::kFloat32: return lamb_apply_loop<Fp32>(a, begin, end);
    case DType::kBFloat16: return lamb_apply_loop<Bf16>(a, begin, end);
    case DType::kFloat16: return lamb_apply_loop<Fp16>(a, begin, end);
  }
}

template <class G>
double sum_squares_loop(const void* x, int64_t begin, int64_t end) {
  const typename G::T* __restrict__ data = static_cast<const typename G::T*>(x);
  double acc[kLanes] = {};
  for (int64_t i = begin; i < end; i += kLanes) {
    const int width = static_cast<int>(end - i < kLanes ? end - i : kLanes);
#pragma omp simd
    for (int j = 0; j < width; ++j) {
      const double d = G::load(data, i + j);
      acc[j] += d * d;
    }
  }
  return sum_lanes(acc);
}

double sum_squares(const void* x, DType dtype, int64_t begin, int64_t end) {
  switch (dtype) {
    case DType::kFloat32: return sum_squares_loop<Fp32>(x, begin, end);
    case DType::kBFloat16: return sum_squares_loop<Bf16>(x, begin, end);
    case DType::kFloat16: return sum_squares_loop<Fp16>(x, begin, end);
  }
  return 0.0;
}

}  // namespace

extern const KernelTable kTable;
const KernelTable kTable{ZEROTRAIN_CPU_ISA_NAME, &adam, &lamb_prepare, &lamb_apply, &sum_squares};

}  // namespace zerotrain::optim::cpu::ZEROTRAIN_CPU_ISA
