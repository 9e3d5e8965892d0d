#pragma once
// Packs of kIlp consecutive elements moved with one vector load or store
// (16 bytes of fp32, 8 of bf16/fp16), as apex's and llm.c's optimizer kernels
// do.
//
// Note [Vector loads where alignment allows]
// A functor walks its chunk in packs when every tensor it touches is aligned
// to its pack size at the chunk's start (chunk starts are multiples of
// kChunkSize, so this is the tensors' own alignment: true for whole
// allocations and for shards cut at multiples of kIlp); the last
// (end - begin) % kIlp elements take the scalar path, and so does a chunk
// any of whose tensors is not aligned. The same per-element update runs on
// the same floats either way, so the results are bitwise the scalar path's:
// only the memory transactions change.

#include "kernels/dtypes.cuh"
#include "kernels/multi_tensor_apply.cuh"

#include <stdint.h>

namespace zerotrain::kernels {

template <class T>
struct alignas(kIlp * sizeof(T)) Pack {
  T v[kIlp];
};

/// Whether x is aligned for Pack loads (a null x, an absent output, is).
template <class T>
__device__ __forceinline__ bool pack_aligned(const T* x) {
  return reinterpret_cast<uintptr_t>(x) % sizeof(Pack<T>) == 0;
}

/// Elements [i, i + kIlp) of x widened to float; x + i must be pack aligned.
template <class E, class Index>
__device__ __forceinline__ void load_pack(const typename E::T* x, Index i, float (&out)[kIlp]) {
  const Pack<typename E::T> p = *reinterpret_cast<const Pack<typename E::T>*>(x + i);
#pragma unroll
  for (int k = 0; k < kIlp; ++k) out[k] = E::to_float(p.v[k]);
}

/// Stores [i, i + kIlp) of x, each rounded as E::store rounds; a no-op for NoCopy.
template <class E, class Index>
__device__ __forceinline__ void store_pack(typename E::T* x, Index i, const float (&in)[kIlp]) {
  if constexpr (E::kEnabled) {
    Pack<typename E::T> p;
#pragma unroll
    for (int k = 0; k < kIlp; ++k) p.v[k] = E::from_float(in[k]);
    *reinterpret_cast<Pack<typename E::T>*>(x + i) = p;
  }
}

/// The end of the chunk's whole packs: [c.begin, packs_end(c)) is walked in
/// packs, [packs_end(c), c.end) element by element.
template <class Index>
__device__ __forceinline__ Index packs_end(const Chunk<Index>& c) {
  return c.begin + (c.end - c.begin) / kIlp * kIlp;
}

}  // namespace zerotrain::kernels
