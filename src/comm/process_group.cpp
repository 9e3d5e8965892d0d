// make_process_group: a c10d ProcessGroup with Gloo for CPU tensors and,
// when chosen, NCCL for CUDA tensors. Shared by init_distributed and by the
// channels a communicator opens (Communicator::open_channel).

#include "comm/backends.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

namespace zerotrain::comm_detail {

c10::intrusive_ptr<c10d::ProcessGroup> make_process_group(const BackendSetup& setup,
                                                          const BackendChoice& choice) {
  auto group = c10::make_intrusive<c10d::ProcessGroup>(setup.store, setup.rank, setup.world_size);
  BackendSetup each = setup;
  if (choice.gloo) {
    each.store = c10::make_intrusive<c10d::PrefixStore>("gloo", setup.store);
    auto gloo = make_gloo_backend(each);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::GLOO, gloo);
    if (choice.gloo_cuda) group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::GLOO, gloo);
    group->setDefaultBackend(c10d::ProcessGroup::GLOO);
  }
  if (choice.nccl) {
    each.store = c10::make_intrusive<c10d::PrefixStore>("nccl", setup.store);
    group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::NCCL, make_nccl_backend(each));
    if (choice.nccl_default || !choice.gloo) group->setDefaultBackend(c10d::ProcessGroup::NCCL);
  }
  return group;
}

std::string backend_name(c10d::ProcessGroup& group, c10::DeviceType device) {
  for (const c10::Device& d : group.getDeviceTypes()) {
    if (d.type() != device) continue;
    try {
      auto backend = group.getBackend(device);
      return backend ? backend->getBackendName() : "";
    } catch (const std::exception&) {
      return "";  // registered but not built
    }
  }
  return "";
}

}  // namespace zerotrain::comm_detail
