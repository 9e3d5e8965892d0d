#include "kernels/fused_lamb.cuh"

#include "kernels/block_reduce.cuh"
#include "kernels/chunk_reduce.cuh"
#include "kernels/dtypes.cuh"
#include "kernels/multi_tensor_apply.cuh"
#include "kernels/vector_access.cuh"

namespace zerotrain::kernels {
namespace {

// Lists: 0 params, 1 exp_avg, 2 exp_avg_sq, 3 grads, 4 updates. Writes the
// chunk's partial ||p||^2 and ||u||^2 to partials[2 * c.partial + {0, 1}].
template <class G>
struct LambPrepareFunctor {
  LambScalars s;
  const float* inv_scale;
  const int32_t* overflow;
  double* partials;

  template <class Index, int Depth>
  __device__ __forceinline__ void operator()(const TensorListMeta<Depth>& meta,
                                             const Chunk<Index>& c) const {
    __shared__ double scratch[32];
    if (*overflow != 0) {
      if (threadIdx.x == 0) partials[2 * c.partial] = partials[2 * c.partial + 1] = 0.0;
      return;
    }
    const float inv = *inv_scale;
    const float* p = static_cast<const float*>(meta.addresses[0][c.slot]);
    float* m = static_cast<float*>(meta.addresses[1][c.slot]);
    float* v = static_cast<float*>(meta.addresses[2][c.slot]);
    const auto* g = static_cast<const typename G::T*>(meta.addresses[3][c.slot]);
    float* u = static_cast<float*>(meta.addresses[4][c.slot]);
    double p_sq = 0.0, u_sq = 0.0;
    const Index stride = static_cast<Index>(blockDim.x);
    for (Index base = c.begin + static_cast<Index>(threadIdx.x); base < c.end; base += kIlp * stride) {
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
          const float uk = lamb_prepare_element(rp[k], rm[k], rv[k], rg[k], s);
          m[i] = rm[k];
          v[i] = rv[k];
          u[i] = uk;
          p_sq += static_cast<double>(rp[k]) * rp[k];
          u_sq += static_cast<double>(uk) * uk;
        }
      }
    }
    p_sq = block_sum(p_sq, scratch);
    u_sq = block_sum(u_sq, scratch);
    if (threadIdx.x == 0) {
      partials[2 * c.partial] = p_sq;
      partials[2 * c.partial + 1] = u_sq;
    }
  }
};

// Lists: 0 params, 1 updates, 2 copies (when C::kEnabled).
template <class C>
struct LambApplyFunctor {
  const double* norms;
  float step_size;
  float min_coeff;
  float max_coeff;
  const int32_t* overflow;

  template <class Index, int Depth>
  __device__ __forceinline__ void operator()(const TensorListMeta<Depth>& meta,
                                             const Chunk<Index>& c) const {
    if (*overflow != 0) return;
    const float trust = lamb_trust_ratio(norms[2 * c.tensor], norms[2 * c.tensor + 1], min_coeff, max_coeff);
    const float scaled = step_size * trust;
    float* p = static_cast<float*>(meta.addresses[0][c.slot]);
    const float* u = static_cast<const float*>(meta.addresses[1][c.slot]);
    typename C::T* out = nullptr;
    if constexpr (C::kEnabled) out = static_cast<typename C::T*>(meta.addresses[Depth - 1][c.slot]);
    // Note [Vector loads where alignment allows] (vector_access.cuh).
    Index scalar_begin = c.begin;
    if (pack_aligned(p + c.begin) && pack_aligned(u + c.begin) && (!C::kEnabled || pack_aligned(out + c.begin))) {
      scalar_begin = packs_end(c);
      for (Index i = c.begin + static_cast<Index>(threadIdx.x) * kIlp; i < scalar_begin;
           i += kIlp * static_cast<Index>(blockDim.x)) {
        float rp[kIlp], ru[kIlp];
        load_pack<F32>(p, i, rp);
        load_pack<F32>(u, i, ru);
#pragma unroll
        for (int k = 0; k < kIlp; ++k) lamb_apply_element(rp[k], ru[k], scaled);
        store_pack<F32>(p, i, rp);
        store_pack<C>(out, i, rp);
      }
    }
    for (Index i = scalar_begin + static_cast<Index>(threadIdx.x); i < c.end; i += static_cast<Index>(blockDim.x)) {
      float pi = p[i];
      lamb_apply_element(pi, u[i], scaled);
      p[i] = pi;
      if constexpr (C::kEnabled) C::store(out, i, pi);
    }
  }
};

template <class G>
void launch_lamb_prepare(const LambPrepareLaunch& l, cudaStream_t stream) {
  const LambPrepareFunctor<G> f{l.scalars, l.inv_scale, l.overflow, l.chunk_partials};
  void* const* lists[5] = {const_cast<void* const*>(reinterpret_cast<const void* const*>(l.params)),
                           reinterpret_cast<void* const*>(l.exp_avg),
                           reinterpret_cast<void* const*>(l.exp_avg_sq),
                           const_cast<void* const*>(l.grads),
                           reinterpret_cast<void* const*>(l.updates)};
  multi_tensor_apply<5>("fused_lamb_prepare", l.num_tensors, lists, l.numels, l.chunk_offsets_host, f,
                        stream);
  sum_chunk_partials(l.chunk_partials, l.chunk_offsets_device, l.num_tensors, 2, l.norms, stream);
}

template <class C>
void launch_lamb_apply(const LambApplyLaunch& l, cudaStream_t stream) {
  const LambApplyFunctor<C> f{l.norms, l.step_size, l.min_coeff, l.max_coeff, l.overflow};
  void* const* lists[3] = {reinterpret_cast<void* const*>(l.params),
                           const_cast<void* const*>(reinterpret_cast<const void* const*>(l.updates)),
                           l.param_copies};
  if constexpr (C::kEnabled)
    multi_tensor_apply<3>("fused_lamb_apply", l.num_tensors, lists, l.numels, nullptr, f, stream);
  else
    multi_tensor_apply<2>("fused_lamb_apply", l.num_tensors, lists, l.numels, nullptr, f, stream);
}

}  // namespace

void fused_lamb_prepare(const LambPrepareLaunch& l, cudaStream_t stream) {
  constexpr const char* kEntry = "fused_lamb_prepare";
  if (l.inv_scale == nullptr || l.overflow == nullptr)
    throw_invalid(kEntry, "inv_scale and overflow must be device pointers, got null");
  if (l.num_tensors > 0 && (l.chunk_offsets_host == nullptr || l.chunk_offsets_device == nullptr ||
                            l.chunk_partials == nullptr || l.norms == nullptr))
    throw_invalid(kEntry, "chunk offsets, partials and norms are required");
  if (!valid_dtype(l.grad_dtype)) throw_invalid(kEntry, "unknown dtype");
  for (int t = 0; t < l.num_tensors; ++t)
    if (l.chunk_offsets_host[t + 1] - l.chunk_offsets_host[t] != num_chunks(l.numels[t]))
      throw_invalid(kEntry, "chunk_offsets do not match numels at tensor " + std::to_string(t));
  dispatch_dtype(l.grad_dtype, [&](auto g) { launch_lamb_prepare<decltype(g)>(l, stream); });
}

void fused_lamb_apply(const LambApplyLaunch& l, cudaStream_t stream) {
  constexpr const char* kEntry = "fused_lamb_apply";
  if (l.overflow == nullptr || (l.num_tensors > 0 && l.norms == nullptr))
    throw_invalid(kEntry, "overflow and norms must be device pointers, got null");
  if (l.param_copies != nullptr && !valid_dtype(l.copy_dtype)) throw_invalid(kEntry, "unknown dtype");
  if (!(l.min_coeff <= l.max_coeff)) throw_invalid(kEntry, "min_coeff must not exceed max_coeff");
  dispatch_copy(l.param_copies != nullptr, l.copy_dtype,
                [&](auto c) { launch_lamb_apply<decltype(c)>(l, stream); });
}

}  // namespace zerotrain::kernels
