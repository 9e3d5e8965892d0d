// The CUDA side of the fused optimizer: raw pointers for kernels/ entry points,
// launched on the current stream. No host synchronisation: the chunk offsets
// travel through pinned memory with a non-blocking copy, and scratch comes
// from the caching allocator.

#include "optim/fused_cuda.h"

#include "kernels/chunking.h"
#include "kernels/fused_adam.cuh"
#include "kernels/fused_lamb.cuh"
#include "kernels/multi_tensor_norm.cuh"
#include "kernels/unscale.cuh"

#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include <exception>
#include <string>
#include <vector>

namespace zerotrain::optim::cuda {

namespace {

template <class T>
std::vector<T*> pointers(const std::vector<at::Tensor>& xs) {
  std::vector<T*> out;
  out.reserve(xs.size());
  for (const at::Tensor& x : xs) out.push_back(static_cast<T*>(x.data_ptr()));
  return out;
}

std::vector<int64_t> numels_of(const std::vector<at::Tensor>& xs) {
  std::vector<int64_t> n;
  n.reserve(xs.size());
  for (const at::Tensor& x : xs) n.push_back(x.numel());
  return n;
}

/// Prefix sums of the chunk counts, on the host and (through pinned memory,
/// without a host wait) on the device, plus a partials buffer of `width`
/// doubles per chunk.
struct ChunkScratch {
  std::vector<int64_t> offsets;
  at::Tensor offsets_device;
  at::Tensor partials;

  ChunkScratch(const std::vector<int64_t>& numels, int width, const c10::Device& device) {
    offsets.assign(numels.size() + 1, 0);
    for (size_t i = 0; i < numels.size(); ++i) offsets[i + 1] = offsets[i] + kernels::num_chunks(numels[i]);
    at::Tensor pinned = at::empty({static_cast<int64_t>(offsets.size())},
                                  at::TensorOptions().dtype(at::kLong).pinned_memory(true));
    std::copy(offsets.begin(), offsets.end(), pinned.data_ptr<int64_t>());
    offsets_device = pinned.to(device, /*non_blocking=*/true);
    partials = at::empty({std::max<int64_t>(1, offsets.back() * width)},
                         at::TensorOptions().dtype(at::kDouble).device(device));
  }
};

// Kernel entries throw std exceptions; report them as LibTorch errors.
template <class F>
void run(const char* op, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "zerotrain ", op, ": ", e.what());
  }
}

cudaStream_t current_stream(const c10::Device& device) {
  return c10::cuda::getCurrentCUDAStream(device.index()).stream();
}

}  // namespace

void fused_adam(const AdamTensors& t, const kernels::AdamScalars& s, const StepControl& c) {
  const c10::Device device = t.params[0].device();
  const c10::cuda::CUDAGuard guard(device);
  const auto params = pointers<float>(t.params);
  const auto m = pointers<float>(t.exp_avg);
  const auto v = pointers<float>(t.exp_avg_sq);
  const auto grads = pointers<void>(t.grads);
  const auto copies = pointers<void>(t.param_copies);
  const auto numels = numels_of(t.params);
  std::vector<const void*> grads_c(grads.begin(), grads.end());
  kernels::AdamLaunch l{};
  l.num_tensors = static_cast<int>(t.params.size());
  l.params = params.data();
  l.exp_avg = m.data();
  l.exp_avg_sq = v.data();
  l.grads = grads_c.data();
  l.grad_dtype = kernel_dtype(t.grads[0], "grads");
  l.param_copies = copies.empty() ? nullptr : copies.data();
  l.copy_dtype = copies.empty() ? kernels::DType::kFloat32 : kernel_dtype(t.param_copies[0], "param_copies");
  l.numels = numels.data();
  l.inv_scale = c.inv_scale.data_ptr<float>();
  l.overflow = c.overflow.data_ptr<int32_t>();
  l.scalars = s;
  run("fused_adam", [&] { kernels::fused_adam(l, current_stream(device)); });
}

at::Tensor fused_lamb_prepare(const LambTensors& t, const kernels::LambScalars& s, const StepControl& c) {
  const c10::Device device = t.params[0].device();
  const c10::cuda::CUDAGuard guard(device);
  const auto params = pointers<float>(t.params);
  const std::vector<const float*> params_c(params.begin(), params.end());
  const auto m = pointers<float>(t.exp_avg);
  const auto v = pointers<float>(t.exp_avg_sq);
  const auto grads = pointers<void>(t.grads);
  const std::vector<const void*> grads_c(grads.begin(), grads.end());
  const auto updates = pointers<float>(t.updates);
  const auto numels = numels_of(t.params);
  ChunkScratch scratch(numels, 2, device);
  const int64_t n = static_cast<int64_t>(t.params.size());
  at::Tensor norms = at::empty({n, 2}, at::TensorOptions().dtype(at::kDouble).device(device));
  kernels::LambPrepareLaunch l{};
  l.num_tensors = static_cast<int>(n);
  l.params = params_c.data();
  l.exp_avg = m.data();
  l.exp_avg_sq = v.data();
  l.grads = grads_c.data();
  l.grad_dtype = kernel_dtype(t.grads[0], "grads");
  l.updates = updates.data();
  l.numels = numels.data();
  l.chunk_offsets_host = scratch.offsets.data();
  l.chunk_offsets_device = scratch.offsets_device.data_ptr<int64_t>();
  l.chunk_partials = scratch.partials.data_ptr<double>();
  l.norms = norms.data_ptr<double>();
  l.inv_scale = c.inv_scale.data_ptr<float>();
  l.overflow = c.overflow.data_ptr<int32_t>();
  l.scalars = s;
  run("fused_lamb_prepare", [&] { kernels::fused_lamb_prepare(l, current_stream(device)); });
  return norms;
}

void fused_lamb_apply(const LambTensors& t, const at::Tensor& norms, float step_size, float min_coeff,
                      float max_coeff, const StepControl& c) {
  const c10::Device device = t.params[0].device();
  const c10::cuda::CUDAGuard guard(device);
  const auto params = pointers<float>(t.params);
  const auto updates = pointers<float>(t.updates);
  const std::vector<const float*> updates_c(updates.begin(), updates.end());
  const auto copies = pointers<void>(t.param_copies);
  const auto numels = numels_of(t.params);
  kernels::LambApplyLaunch l{};
  l.num_tensors = static_cast<int>(t.params.size());
  l.params = params.data();
  l.updates = updates_c.data();
  l.param_copies = copies.empty() ? nullptr : copies.data();
  l.copy_dtype = copies.empty() ? kernels::DType::kFloat32 : kernel_dtype(t.param_copies[0], "param_copies");
  l.numels = numels.data();
  l.norms = norms.data_ptr<double>();
  l.step_size = step_size;
  l.min_coeff = min_coeff;
  l.max_coeff = max_coeff;
  l.overflow = c.overflow.data_ptr<int32_t>();
  run("fused_lamb_apply", [&] { kernels::fused_lamb_apply(l, current_stream(device)); });
}

at::Tensor multi_tensor_sum_squares(const std::vector<at::Tensor>& xs, const at::Tensor& overflow) {
  const c10::Device device = xs[0].device();
  const c10::cuda::CUDAGuard guard(device);
  const auto data = pointers<void>(xs);
  const std::vector<const void*> data_c(data.begin(), data.end());
  const auto numels = numels_of(xs);
  ChunkScratch scratch(numels, 1, device);
  at::Tensor out = at::empty({static_cast<int64_t>(xs.size())},
                             at::TensorOptions().dtype(at::kDouble).device(device));
  kernels::SumSquaresLaunch l{};
  l.num_tensors = static_cast<int>(xs.size());
  l.tensors = data_c.data();
  l.dtype = kernel_dtype(xs[0], "tensors");
  l.numels = numels.data();
  l.chunk_offsets_host = scratch.offsets.data();
  l.chunk_offsets_device = scratch.offsets_device.data_ptr<int64_t>();
  l.chunk_partials = scratch.partials.data_ptr<double>();
  l.out = out.data_ptr<double>();
  l.overflow = overflow.defined() ? overflow.data_ptr<int32_t>() : nullptr;
  run("multi_tensor_sum_squares", [&] { kernels::multi_tensor_sum_squares(l, current_stream(device)); });
  return out;
}

void unscale_(const std::vector<at::Tensor>& xs, const StepControl& c) {
  const c10::Device device = xs[0].device();
  const c10::cuda::CUDAGuard guard(device);
  const auto data = pointers<void>(xs);
  const auto numels = numels_of(xs);
  kernels::UnscaleLaunch l{};
  l.num_tensors = static_cast<int>(xs.size());
  l.tensors = data.data();
  l.dtype = kernel_dtype(xs[0], "tensors");
  l.numels = numels.data();
  l.inv_scale = c.inv_scale.data_ptr<float>();
  l.overflow = c.overflow.data_ptr<int32_t>();
  run("unscale_", [&] { kernels::unscale(l, current_stream(device)); });
}

}  // namespace zerotrain::optim::cuda
