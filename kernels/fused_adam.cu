#include "kernels/fused_adam.cuh"

#include "kernels/dtypes.cuh"
#include "kernels/multi_tensor_apply.cuh"
#include "kernels/vector_access.cuh"

#include <cmath>

namespace zerotrain::kernels {
namespace {

// Lists: 0 params, 1 exp_avg, 2 exp_avg_sq, 3 grads, 4 copies (when C::kEnabled).
template <class G, class C>
struct AdamFunctor {
  AdamScalars s;
  const float* inv_scale;
  const int32_t* overflow;

  template <class Index, int Depth>
  __device__ __forceinline__ void operator()(const TensorListMeta<Depth>& meta,
                                             const Chunk<Index>& c) const {
    if (*overflow != 0) return;
    const float inv = *inv_scale;
    float* p = static_cast<float*>(meta.addresses[0][c.slot]);
    float* m = static_cast<float*>(meta.addresses[1][c.slot]);
    float* v = static_cast<float*>(meta.addresses[2][c.slot]);
    const auto* g = static_cast<const typename G::T*>(meta.addresses[3][c.slot]);
    typename C::T* out = nullptr;
    if constexpr (C::kEnabled) out = static_cast<typename C::T*>(meta.addresses[Depth - 1][c.slot]);
    const Index stride = static_cast<Index>(blockDim.x);
    // Note [Vector loads where alignment allows] (vector_access.cuh).
    Index scalar_begin = c.begin;
    if (pack_aligned(p + c.begin) && pack_aligned(m + c.begin) && pack_aligned(v + c.begin) &&
        pack_aligned(g + c.begin) && (!C::kEnabled || pack_aligned(out + c.begin))) {
      scalar_begin = packs_end(c);
      for (Index i = c.begin + static_cast<Index>(threadIdx.x) * kIlp; i < scalar_begin; i += kIlp * stride) {
        float rp[kIlp], rm[kIlp], rv[kIlp], rg[kIlp];
        load_pack<F32>(p, i, rp);
        load_pack<F32>(m, i, rm);
        load_pack<F32>(v, i, rv);
        load_pack<G>(g, i, rg);
#pragma unroll
        for (int k = 0; k < kIlp; ++k) adam_update(rp[k], rm[k], rv[k], rg[k] * inv, s);
        store_pack<F32>(p, i, rp);
        store_pack<F32>(m, i, rm);
        store_pack<F32>(v, i, rv);
        store_pack<C>(out, i, rp);
      }
    }
    for (Index base = scalar_begin + static_cast<Index>(threadIdx.x); base < c.end; base += kIlp * stride) {
      float rp[kIlp], rm[kIlp], rv[kIlp], rg[kIlp];
#pragma unroll
      for (int k = 0; k < kIlp; ++k) {
        const Index i = base + k * stride;
        if (i < c.end) {
          rp[k] = p[i];
          rm[k] = m[i];
          rv[k] = v[i];
          rg[k] = G::load(g, i) * inv;
        }
      }
#pragma unroll
      for (int k = 0; k < kIlp; ++k) {
        const Index i = base + k * stride;
        if (i < c.end) {
          adam_update(rp[k], rm[k], rv[k], rg[k], s);
          p[i] = rp[k];
          m[i] = rm[k];
          v[i] = rv[k];
          if constexpr (C::kEnabled) C::store(out, i, rp[k]);
        }
      }
    }
  }
};

template <class G, class C>
void launch_adam(const AdamLaunch& l, cudaStream_t stream) {
  const AdamFunctor<G, C> f{l.scalars, l.inv_scale, l.overflow};
  void* const* lists[5] = {reinterpret_cast<void* const*>(l.params),
                           reinterpret_cast<void* const*>(l.exp_avg),
                           reinterpret_cast<void* const*>(l.exp_avg_sq),
                           const_cast<void* const*>(l.grads), l.param_copies};
  if constexpr (C::kEnabled)
    multi_tensor_apply<5>("fused_adam", l.num_tensors, lists, l.numels, nullptr, f, stream);
  else
    multi_tensor_apply<4>("fused_adam", l.num_tensors, lists, l.numels, nullptr, f, stream);
}

}  // namespace

void fused_adam(const AdamLaunch& l, cudaStream_t stream) {
  constexpr const char* kEntry = "fused_adam";
  if (l.inv_scale == nullptr || l.overflow == nullptr)
    throw_invalid(kEntry, "inv_scale and overflow must be device pointers, got null");
  if (!valid_dtype(l.grad_dtype) || (l.param_copies != nullptr && !valid_dtype(l.copy_dtype)))
    throw_invalid(kEntry, "unknown dtype");
  if (!(l.scalars.inv_bias_correction2 > 0.0f) || !std::isfinite(l.scalars.step_size))
    throw_invalid(kEntry, "bias corrections must be positive and finite (the step counts from 1)");
  dispatch_dtype(l.grad_dtype, [&](auto g) {
    dispatch_copy(l.param_copies != nullptr, l.copy_dtype, [&](auto c) {
      launch_adam<decltype(g), decltype(c)>(l, stream);
    });
  });
}

}  // namespace zerotrain::kernels
