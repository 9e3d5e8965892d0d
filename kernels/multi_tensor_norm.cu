#include "kernels/multi_tensor_norm.cuh"

#include "kernels/block_reduce.cuh"
#include "kernels/chunk_reduce.cuh"
#include "kernels/dtypes.cuh"
#include "kernels/multi_tensor_apply.cuh"

namespace zerotrain::kernels {
namespace {

template <class G>
struct SumSquaresFunctor {
  double* partials;
  int32_t* overflow;

  template <class Index, int Depth>
  __device__ __forceinline__ void operator()(const TensorListMeta<Depth>& meta,
                                             const Chunk<Index>& c) const {
    __shared__ double scratch[32];
    const auto* x = static_cast<const typename G::T*>(meta.addresses[0][c.slot]);
    double acc = 0.0;
    bool finite = true;
    for (Index i = c.begin + static_cast<Index>(threadIdx.x); i < c.end; i += static_cast<Index>(blockDim.x)) {
      const float f = G::load(x, i);
      finite = finite && isfinite(f);
      acc += static_cast<double>(f) * f;
    }
    if (!finite && overflow != nullptr) *overflow = 1;
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[c.partial] = acc;
  }
};

template <class G>
void launch_sum_squares(const SumSquaresLaunch& l, cudaStream_t stream) {
  const SumSquaresFunctor<G> f{l.chunk_partials, l.overflow};
  void* const* lists[1] = {const_cast<void* const*>(l.tensors)};
  multi_tensor_apply<1>("multi_tensor_sum_squares", l.num_tensors, lists, l.numels, l.chunk_offsets_host,
                        f, stream);
  sum_chunk_partials(l.chunk_partials, l.chunk_offsets_device, l.num_tensors, 1, l.out, stream);
}

}  // namespace

void multi_tensor_sum_squares(const SumSquaresLaunch& l, cudaStream_t stream) {
  constexpr const char* kEntry = "multi_tensor_sum_squares";
  if (l.num_tensors > 0 && (l.chunk_offsets_host == nullptr || l.chunk_offsets_device == nullptr ||
                            l.chunk_partials == nullptr || l.out == nullptr))
    throw_invalid(kEntry, "chunk offsets, partials and out are required");
  if (!valid_dtype(l.dtype)) throw_invalid(kEntry, "unknown dtype");
  for (int t = 0; t < l.num_tensors; ++t)
    if (l.chunk_offsets_host[t + 1] - l.chunk_offsets_host[t] != num_chunks(l.numels[t]))
      throw_invalid(kEntry, "chunk_offsets do not match numels at tensor " + std::to_string(t));
  dispatch_dtype(l.dtype, [&](auto g) { launch_sum_squares<decltype(g)>(l, stream); });
}

}  // namespace zerotrain::kernels
