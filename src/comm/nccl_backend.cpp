// The NCCL backend for CUDA tensors (CUDA builds only).
//
// c10d's NCCL backend runs every collective on its own stream: the issuing
// stream's work is ordered before it by an event, and Work::wait() makes the
// current stream wait on the collective's end event without blocking the host
// (Note [Issue order is completion order] in communicator.cpp relies on the one
// stream).

#include "comm/backends.h"

#include <zerotrain/distributed.h>

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

namespace zerotrain::comm_detail {

bool nccl_available() { return c10::cuda::device_count() > 0; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const BackendSetup& setup) {
  const int devices = c10::cuda::device_count();
  TORCH_CHECK(devices > 0, "zerotrain comm: the NCCL backend needs a visible CUDA device");
  // Note [NCCL joins without a CUDA context]: c10d creates NCCL communicators
  // lazily, on the device of the first CUDA tensor a collective carries, so a
  // job that asked for NCCL by default but trains on the CPU never creates a
  // CUDA context. Only a job that made NCCL its default backend (barrier and
  // untyped calls) selects LOCAL_RANK's device here, as torchrun scripts do.
  if (setup.select_device) {
    LaunchInfo info;
    info.rank = setup.rank;
    info.local_rank = setup.local_rank;
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(rank_cuda_device(info, devices)));
  }
  auto options = c10d::ProcessGroupNCCL::Options::create();
  // A little later than ours, so that our watchdog reports the operation and
  // the missing ranks before c10d's NCCL watchdog acts on the timeout.
  // See Note [The watchdog reports what nobody waits for] in communicator.cpp.
  options->timeout = setup.timeout + std::chrono::seconds(5);
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(setup.store, setup.rank, setup.world_size,
                                                      options);
}

}  // namespace zerotrain::comm_detail
