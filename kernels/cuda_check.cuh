#pragma once
// Errors from kernel entry points: invalid arguments and CUDA failures throw
// (the at::Tensor glue turns them into c10::Error); nothing here exits.

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace zerotrain::kernels {

[[noreturn]] inline void throw_invalid(const char* entry, const std::string& what) {
  throw std::invalid_argument(std::string("zerotrain kernel ") + entry + ": " + what);
}

inline void check_cuda(cudaError_t e, const char* entry, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("zerotrain kernel ") + entry + ": " + what + ": " +
                             cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

}  // namespace zerotrain::kernels
