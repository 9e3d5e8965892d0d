#include "kernels/unscale.cuh"

#include "kernels/dtypes.cuh"
#include "kernels/multi_tensor_apply.cuh"
#include "kernels/vector_access.cuh"

namespace zerotrain::kernels {
namespace {

template <class G>
struct UnscaleFunctor {
  const float* inv_scale;
  int32_t* overflow;

  template <class Index, int Depth>
  __device__ __forceinline__ void operator()(const TensorListMeta<Depth>& meta,
                                             const Chunk<Index>& c) const {
    const float inv = *inv_scale;
    auto* x = static_cast<typename G::T*>(meta.addresses[0][c.slot]);
    bool finite = true;
    // Note [Vector loads where alignment allows] (vector_access.cuh).
    Index scalar_begin = c.begin;
    if (pack_aligned(x + c.begin)) {
      scalar_begin = packs_end(c);
      for (Index i = c.begin + static_cast<Index>(threadIdx.x) * kIlp; i < scalar_begin;
           i += kIlp * static_cast<Index>(blockDim.x)) {
        float f[kIlp];
        load_pack<G>(x, i, f);
#pragma unroll
        for (int k = 0; k < kIlp; ++k) {
          finite = finite && isfinite(f[k]);
          f[k] *= inv;
        }
        store_pack<G>(x, i, f);
      }
    }
    for (Index i = scalar_begin + static_cast<Index>(threadIdx.x); i < c.end; i += static_cast<Index>(blockDim.x)) {
      const float f = G::load(x, i);
      finite = finite && isfinite(f);
      G::store(x, i, f * inv);
    }
    if (!finite) *overflow = 1;
  }
};

template <class G>
void launch_unscale(const UnscaleLaunch& l, cudaStream_t stream) {
  const UnscaleFunctor<G> f{l.inv_scale, l.overflow};
  void* const* lists[1] = {l.tensors};
  multi_tensor_apply<1>("unscale", l.num_tensors, lists, l.numels, nullptr, f, stream);
}

}  // namespace

void unscale(const UnscaleLaunch& l, cudaStream_t stream) {
  if (l.inv_scale == nullptr || l.overflow == nullptr)
    throw_invalid("unscale", "inv_scale and overflow must be device pointers, got null");
  if (!valid_dtype(l.dtype)) throw_invalid("unscale", "unknown dtype");
  dispatch_dtype(l.dtype, [&](auto g) { launch_unscale<decltype(g)>(l, stream); });
}

}  // namespace zerotrain::kernels
