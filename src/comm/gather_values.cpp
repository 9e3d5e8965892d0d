// See gather_values.h.

#include "comm/gather_values.h"

#include "comm/backends.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <algorithm>
#include <cstring>

namespace zerotrain::comm_detail {
namespace {

// Note [Host values travel on the host]
// These values start and end on the host. Through a CUDA backend they would
// cost a blocking copy to the device and a read back that waits for every
// kernel queued before it: a host-device synchronisation in the middle of
// stage 3's forward (every request round) and of the first backwards. So they
// travel on the group's CPU backend (Gloo) whenever it has one, as every group
// init_distributed and open_channel build does; `device` is the fallback for
// a group that serves only CUDA tensors (torch.distributed's NCCL-only group,
// adopted by the Python package).
c10::Device values_device(Communicator& comm, c10::Device fallback) {
  return backend_name(*comm.process_group(), c10::DeviceType::CPU).empty() ? fallback : c10::Device(c10::kCPU);
}

template <typename T>
std::vector<T> gather(Communicator& comm, c10::Device device, const std::vector<T>& values) {
  const int64_t k = static_cast<int64_t>(values.size());
  at::Tensor in = at::tensor(values, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value))
                      .to(values_device(comm, device));
  at::Tensor out = at::empty({k * comm.world_size()}, in.options());
  comm.all_gather(out, in).wait();
  out = out.cpu();
  const T* p = out.data_ptr<T>();
  return std::vector<T>(p, p + out.numel());
}

}  // namespace

std::vector<int64_t> all_gather_values(Communicator& comm, c10::Device device,
                                       const std::vector<int64_t>& values) {
  return gather(comm, device, values);
}

std::vector<double> all_gather_values(Communicator& comm, c10::Device device,
                                      const std::vector<double>& values) {
  return gather(comm, device, values);
}

// Two all-gathers: the lengths, then the bytes padded to the longest, eight to an int64.
std::vector<std::string> all_gather_text(Communicator& comm, c10::Device device, const std::string& mine) {
  const std::vector<int64_t> lengths =
      all_gather_values(comm, device, std::vector<int64_t>{static_cast<int64_t>(mine.size())});
  int64_t longest = 0;
  for (int64_t l : lengths) longest = std::max(longest, l);
  const size_t words = static_cast<size_t>((longest + 7) / 8);
  std::vector<int64_t> packed(words, 0);
  std::memcpy(packed.data(), mine.data(), mine.size());
  const std::vector<int64_t> all = all_gather_values(comm, device, packed);
  std::vector<std::string> out;
  for (size_t r = 0; r < lengths.size(); ++r)
    out.emplace_back(reinterpret_cast<const char*>(all.data() + r * words), static_cast<size_t>(lengths[r]));
  return out;
}

}  // namespace zerotrain::comm_detail
