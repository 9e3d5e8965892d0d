#pragma once
// The multi-tensor-apply engine (apex's design): a list of tensors is cut into
// chunks of kChunkSize elements, one thread block per chunk, and every
// tensor's addresses and sizes travel by value in the kernel's arguments, so
// one launch covers many tensors without a host-to-device copy. A tensor that
// does not fit into one launch continues in the next. Launches use 32-bit
// element indices unless some tensor needs 64.
//
// A functor implements
//   template <class Index, int Depth>
//   __device__ void operator()(const TensorListMeta<Depth>& meta, const Chunk<Index>& c) const;
// and reads its tensors as meta.addresses[list][c.slot] over [c.begin, c.end).

#include "kernels/chunking.h"
#include "kernels/cuda_check.cuh"

#include <cuda_runtime_api.h>

#include <stdint.h>

#include <limits>

namespace zerotrain::kernels {

constexpr int kBlockSize = 512;
constexpr int kIlp = 4;  // elements each thread loads before computing

// Tensors and blocks per launch by list depth; keeps the argument struct
// under the 4 KiB kernel-parameter limit.
template <int Depth>
struct ListCapacity;
template <> struct ListCapacity<1> { static constexpr int kTensors = 64; static constexpr int kBlocks = 320; };
template <> struct ListCapacity<2> { static constexpr int kTensors = 56; static constexpr int kBlocks = 320; };
template <> struct ListCapacity<3> { static constexpr int kTensors = 48; static constexpr int kBlocks = 320; };
template <> struct ListCapacity<4> { static constexpr int kTensors = 36; static constexpr int kBlocks = 320; };
template <> struct ListCapacity<5> { static constexpr int kTensors = 30; static constexpr int kBlocks = 320; };

template <int Depth>
struct TensorListMeta {
  static constexpr int kTensors = ListCapacity<Depth>::kTensors;
  static constexpr int kBlocks = ListCapacity<Depth>::kBlocks;
  void* addresses[Depth][kTensors];
  int64_t sizes[kTensors];
  int64_t chunk_base[kTensors];  // first per-chunk output slot of each tensor
  int32_t tensor_index[kTensors];  // the tensor's index in the caller's lists
  int32_t block_to_chunk[kBlocks];
  uint8_t block_to_slot[kBlocks];
};
static_assert(sizeof(TensorListMeta<5>) < 4096, "kernel arguments must stay under 4 KiB");
static_assert(sizeof(TensorListMeta<1>) < 4096, "kernel arguments must stay under 4 KiB");
static_assert(sizeof(TensorListMeta<2>) < 4096, "kernel arguments must stay under 4 KiB");

/// The part of one tensor a thread block works on.
template <class Index>
struct Chunk {
  int slot;          // index into the meta arrays
  int32_t tensor;    // index in the caller's lists
  Index begin;       // element range [begin, end) of the tensor
  Index end;
  int64_t partial;   // this chunk's slot in a per-chunk output buffer
};

template <class Index, int Depth, class Functor>
__global__ void __launch_bounds__(kBlockSize) multi_tensor_kernel(const TensorListMeta<Depth> meta,
                                                                  const Functor f) {
  const int slot = meta.block_to_slot[blockIdx.x];
  const int32_t chunk = meta.block_to_chunk[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(chunk) * kChunkSize;
  const int64_t end = begin + kChunkSize < meta.sizes[slot] ? begin + kChunkSize : meta.sizes[slot];
  const Chunk<Index> c{slot, meta.tensor_index[slot], static_cast<Index>(begin),
                       static_cast<Index>(end), meta.chunk_base[slot] + chunk};
  f(meta, c);
}

/// One list of tensors per depth level: lists[d][t] is tensor t of list d.
/// `chunk_base` (host, may be null) gives each tensor's first per-chunk output
/// slot for functors that write per-chunk partial results.
template <int Depth, class Index, class Functor>
void multi_tensor_launch(const char* entry, int num_tensors, void* const* const* lists,
                         const int64_t* numels, const int64_t* chunk_base, const Functor& f,
                         cudaStream_t stream) {
  using Meta = TensorListMeta<Depth>;
  Meta meta;
  int slots = 0;
  int blocks = 0;
  auto launch = [&] {
    multi_tensor_kernel<Index, Depth, Functor><<<blocks, kBlockSize, 0, stream>>>(meta, f);
    check_cuda(cudaGetLastError(), entry, "kernel launch");
    blocks = 0;
  };
  for (int t = 0; t < num_tensors; ++t) {
    if (numels[t] == 0) continue;
    for (int d = 0; d < Depth; ++d) meta.addresses[d][slots] = lists[d][t];
    meta.sizes[slots] = numels[t];
    meta.chunk_base[slots] = chunk_base ? chunk_base[t] : 0;
    meta.tensor_index[slots] = t;
    ++slots;
    const int64_t chunks = num_chunks(numels[t]);
    for (int64_t c = 0; c < chunks; ++c) {
      meta.block_to_slot[blocks] = static_cast<uint8_t>(slots - 1);
      meta.block_to_chunk[blocks] = static_cast<int32_t>(c);
      ++blocks;
      const bool tensor_done = c == chunks - 1;
      if (blocks == Meta::kBlocks || (slots == Meta::kTensors && tensor_done)) {
        launch();
        if (tensor_done) {
          slots = 0;
        } else {  // the tensor continues in the next launch, in slot 0
          for (int d = 0; d < Depth; ++d) meta.addresses[d][0] = meta.addresses[d][slots - 1];
          meta.sizes[0] = meta.sizes[slots - 1];
          meta.chunk_base[0] = meta.chunk_base[slots - 1];
          meta.tensor_index[0] = meta.tensor_index[slots - 1];
          slots = 1;
        }
      }
    }
  }
  if (blocks > 0) launch();
}

/// Checks the lists and launches with 32-bit indices when every tensor allows.
template <int Depth, class Functor>
void multi_tensor_apply(const char* entry, int num_tensors, void* const* const* lists,
                        const int64_t* numels, const int64_t* chunk_base, const Functor& f,
                        cudaStream_t stream) {
  if (num_tensors < 0) throw_invalid(entry, "negative tensor count");
  if (num_tensors == 0) return;
  if (numels == nullptr) throw_invalid(entry, "numels is null");
  bool wide = false;
  for (int t = 0; t < num_tensors; ++t) {
    if (numels[t] < 0) throw_invalid(entry, "tensor " + std::to_string(t) + " has a negative size");
    if (num_chunks(numels[t]) > std::numeric_limits<int32_t>::max())
      throw_invalid(entry, "tensor " + std::to_string(t) + " is too large");
    if (numels[t] > 0) {
      for (int d = 0; d < Depth; ++d)
        if (lists[d] == nullptr || lists[d][t] == nullptr)
          throw_invalid(entry, "list " + std::to_string(d) + ", tensor " + std::to_string(t) +
                                   ": null pointer");
    }
    // Index arithmetic reaches end + kIlp * kBlockSize inside a chunk.
    if (numels[t] > std::numeric_limits<int32_t>::max() - 2 * kChunkSize) wide = true;
  }
  if (wide)
    multi_tensor_launch<Depth, int64_t>(entry, num_tensors, lists, numels, chunk_base, f, stream);
  else
    multi_tensor_launch<Depth, int32_t>(entry, num_tensors, lists, numels, chunk_base, f, stream);
}

}  // namespace zerotrain::kernels
