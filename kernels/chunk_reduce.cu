#include "kernels/chunk_reduce.cuh"

#include "kernels/block_reduce.cuh"
#include "kernels/cuda_check.cuh"

namespace zerotrain::kernels {
namespace {

constexpr int kReduceThreads = 256;

__global__ void sum_chunk_partials_kernel(const double* partials, const int64_t* offsets, int width,
                                          double* out) {
  __shared__ double scratch[32];
  const int t = blockIdx.x;
  const int64_t begin = offsets[t];
  const int64_t end = offsets[t + 1];
  for (int w = 0; w < width; ++w) {
    double acc = 0.0;
    for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) acc += partials[k * width + w];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[static_cast<int64_t>(t) * width + w] = acc;
  }
}

void launch_sum_chunk_partials(const double* partials, const int64_t* offsets, int num_tensors,
                               int width, double* out, cudaStream_t stream) {
  sum_chunk_partials_kernel<<<num_tensors, kReduceThreads, 0, stream>>>(partials, offsets, width, out);
}

}  // namespace

void sum_chunk_partials(const double* partials, const int64_t* offsets, int num_tensors, int width,
                        double* out, cudaStream_t stream) {
  constexpr const char* kEntry = "sum_chunk_partials";
  if (num_tensors < 0) throw_invalid(kEntry, "negative tensor count");
  if (num_tensors == 0) return;
  if (width != 1 && width != 2) throw_invalid(kEntry, "width must be 1 or 2");
  if (partials == nullptr || offsets == nullptr || out == nullptr)
    throw_invalid(kEntry, "null pointer argument");
  launch_sum_chunk_partials(partials, offsets, num_tensors, width, out, stream);
  check_cuda(cudaGetLastError(), kEntry, "kernel launch");
}

}  // namespace zerotrain::kernels
