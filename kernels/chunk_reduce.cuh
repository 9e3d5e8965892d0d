#pragma once
// Per-tensor totals from per-chunk partial sums, in a fixed order (no atomics),
// so reductions on the GPU are reproducible run to run. Used by the norm and
// LAMB kernels, whose functors write one partial per chunk.

#include <cuda_runtime_api.h>

#include <stdint.h>

namespace zerotrain::kernels {

/// out[t * width + w] = sum over chunks k in [offsets[t], offsets[t + 1]) of
/// partials[k * width + w], for t < num_tensors, w < width (1 or 2).
/// `offsets` (num_tensors + 1 entries), `partials` and `out` are device memory.
void sum_chunk_partials(const double* partials, const int64_t* offsets, int num_tensors, int width,
                        double* out, cudaStream_t stream);

}  // namespace zerotrain::kernels
