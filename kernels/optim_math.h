#pragma once
// The element-wise math of every optimizer, written once and compiled for the
// CUDA kernels (kernels/*.cu) and for each CPU instruction set
// (src/optim/cpu/). Nothing here knows about dtypes, tensors or threads: a
// kernel loads an element as float, calls the update, and stores the results.
//
// Note [One update function per algorithm]
// adam_update(), lamb_prepare_element() and lamb_apply_element() are the only
// places the formulas live. Every dtype variant (fp32/bf16/fp16 gradients,
// with or without a 16-bit parameter copy) and every device (CUDA, AVX-512,
// AVX2, scalar) calls them, so a fix to the math is a fix everywhere. The CPU
// builds compile them with -ffp-contract=off, which makes every CPU variant
// produce the same bits (see Note [Every CPU instruction set gives the same
// bits] in src/optim/cpu/cpu_kernels.h).
//
// The formulas are DeepSpeed's FusedAdam / FusedLamb ones
// (../shared/reference/deepspeed.md), with the gradient first multiplied by
// `inv_scale` = 1 / (loss scale * clipping coefficient):
//   Adam (L2):   g += wd p
//   both:        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//                p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
//   AdamW:       p -= lr wd p   (in the same expression, from the old p)
//   LAMB:        m, v as above; u = m / (sqrt(v) + eps) + wd p   (sqrt(v + eps)
//                with eps_inside_sqrt); then, per parameter tensor,
//                p -= lr * sqrt(bc2) / bc1 * trust * u.

#include <stdint.h>

#if defined(__CUDACC__)
#define ZT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#include <cmath>
#define ZT_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace zerotrain::kernels {

/// The element types a kernel reads gradients in and writes parameter copies in.
enum class DType : int32_t { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

/// The scalars of one Adam step, computed once on the host (adam_scalars() in
/// src/optim/fused_optimizer.cpp) and passed by value. The bias corrections
/// are folded into two factors, as DeepSpeed's CPU Adam does, so an element
/// costs one square root and one division.
struct AdamScalars {
  float beta1;
  float beta2;
  float one_minus_beta1;
  float one_minus_beta2;
  float eps;
  float step_size;              // lr / (1 - beta1^t); lr without bias correction
  float inv_bias_correction2;   // 1 / sqrt(1 - beta2^t); 1 without bias correction
  // Adam's weight decay goes into the gradient (L2) or into the update
  // (AdamW, decoupled, as lr * wd); the other one is 0. Multiplies instead of
  // a branch keep the loop free of control flow, which the CPU vectoriser needs.
  float weight_decay_l2;
  float lr_weight_decay_decoupled;
};

ZT_HOST_DEVICE void adam_update(float& p, float& m, float& v, float g, const AdamScalars& s) {
  g = g + s.weight_decay_l2 * p;
  m = s.beta1 * m + s.one_minus_beta1 * g;
  v = s.beta2 * v + s.one_minus_beta2 * (g * g);
  const float denom = sqrtf(v) * s.inv_bias_correction2 + s.eps;
  p = p - (s.step_size * (m / denom) + s.lr_weight_decay_decoupled * p);
}

/// The scalars of LAMB's first stage (moments and the raw update).
struct LambScalars {
  float beta1;
  float beta2;
  float one_minus_beta1;
  float one_minus_beta2;
  float eps;
  float weight_decay;
  int32_t eps_inside_sqrt;  // 0 or 1
};

/// LAMB stage 1 on one element: updates m and v, returns the update u.
ZT_HOST_DEVICE float lamb_prepare_element(float p, float& m, float& v, float g,
                                          const LambScalars& s) {
  m = s.beta1 * m + s.one_minus_beta1 * g;
  v = s.beta2 * v + s.one_minus_beta2 * (g * g);
  const float denom = s.eps_inside_sqrt ? sqrtf(v + s.eps) : sqrtf(v) + s.eps;
  return m / denom + s.weight_decay * p;
}

/// The trust ratio ||p|| / ||u|| clamped to [min_coeff, max_coeff], 1 when
/// either norm is 0 (DeepSpeed's FusedLamb). Norms are given squared.
ZT_HOST_DEVICE float lamb_trust_ratio(double param_norm_sq, double update_norm_sq, float min_coeff,
                                      float max_coeff) {
  if (param_norm_sq == 0.0 || update_norm_sq == 0.0) return 1.0f;
  const float r = static_cast<float>(sqrt(param_norm_sq) / sqrt(update_norm_sq));
  return r < min_coeff ? min_coeff : (r > max_coeff ? max_coeff : r);
}

/// LAMB stage 2 on one element; `step_size` = lr * sqrt(bc2) / bc1 * trust.
ZT_HOST_DEVICE void lamb_apply_element(float& p, float u, float step_size) {
  p = p - step_size * u;
}

}  // namespace zerotrain::kernels
