// See gather_values.h.

#include "comm/gather_values.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

namespace zerotrain::comm_detail {
namespace {

template <typename T>
std::vector<T> gather(Communicator& comm, c10::Device device, const std::vector<T>& values) {
  const int64_t k = static_cast<int64_t>(values.size());
  at::Tensor in =
      at::tensor(values, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value)).to(device);
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

}  // namespace zerotrain::comm_detail
