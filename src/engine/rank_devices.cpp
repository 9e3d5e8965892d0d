// Note [One GPU per rank under NCCL] (rank_devices.h).

#include "engine/rank_devices.h"

#include "comm/backends.h"
#include "comm/gather_values.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <unistd.h>

#include <array>
#include <sstream>

namespace zerotrain::detail {

std::string shared_devices(const std::vector<std::string>& placements) {
  std::ostringstream out;
  for (size_t r = 1; r < placements.size(); ++r) {
    for (size_t earlier = 0; earlier < r; ++earlier) {
      if (placements[r] != placements[earlier]) continue;
      const size_t space = placements[r].rfind(' ');
      if (out.tellp() > 0) out << "; ";
      out << "ranks " << earlier << " and " << r << " both use " << placements[r].substr(space + 1)
          << " on host " << placements[r].substr(0, space);
      break;  // the first earlier rank is enough
    }
  }
  return out.str();
}

bool nccl_carries_cuda(const Communicator& comm) {
  return comm_detail::backend_name(*comm.process_group(), c10::kCUDA) == "nccl";
}

void check_one_gpu_per_rank(Communicator& comm, c10::Device device) {
  if (device.type() != c10::kCUDA || comm.world_size() == 1 || !nccl_carries_cuda(comm)) return;
  // The placements travel through Gloo: a collective on a shared GPU is what
  // fails. A group without a CPU backend leaves the diagnosis to NCCL.
  if (comm_detail::backend_name(*comm.process_group(), c10::kCPU).empty()) return;
  std::array<char, 256> host{};
  TORCH_CHECK(gethostname(host.data(), host.size() - 1) == 0, "zerotrain::initialize: gethostname failed");
  const std::vector<std::string> placements =
      comm_detail::all_gather_text(comm, c10::Device(c10::kCPU), std::string(host.data()) + " " + device.str());
  const std::string shared = shared_devices(placements);
  TORCH_CHECK(shared.empty(), "zerotrain::initialize: NCCL needs one GPU per rank, but ", shared,
              ". Move each rank's model to cuda:LOCAL_RANK (zerotrain::rank_cuda_device), not to \"cuda\"; "
              "to run several ranks on one GPU, initialize with the Gloo backend");
}

}  // namespace zerotrain::detail
