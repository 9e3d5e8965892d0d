#pragma once
// How the multi-tensor-apply engine cuts tensors into chunks: one thread block
// per chunk. Host-only and free of CUDA headers, so the at::Tensor glue in
// src/ can size the per-chunk scratch buffers that reductions need.

#include <stdint.h>

namespace zerotrain::kernels {

constexpr int64_t kChunkSize = 65536;  // elements per thread block

inline int64_t num_chunks(int64_t numel) { return (numel + kChunkSize - 1) / kChunkSize; }

}  // namespace zerotrain::kernels
