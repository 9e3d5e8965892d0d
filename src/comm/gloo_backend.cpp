// The Gloo backend for CPU tensors. The only file that includes Gloo's headers
// (through ProcessGroupGloo.hpp); see cmake/ZerotrainDependencies.cmake.

#include "comm/backends.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <sstream>

namespace zerotrain::comm_detail {

namespace {

bool is_loopback(const std::string& addr) {
  return addr.rfind("127.", 0) == 0 || addr == "localhost" || addr == "::1";
}

}  // namespace

bool gloo_available() { return true; }

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const BackendSetup& setup) {
  auto options = c10d::ProcessGroupGloo::Options::create(setup.timeout);
  // Interfaces: GLOO_SOCKET_IFNAME as torch.distributed reads it; loopback for
  // a job whose rendezvous is local; otherwise the address of this host's name.
  if (const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME"); ifnames != nullptr && *ifnames) {
    std::stringstream list(ifnames);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (!name.empty()) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    }
  } else if (is_loopback(setup.master_addr) || setup.world_size == 1) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  // One worker thread: collectives run, and complete, in issue order.
  // See Note [Issue order is completion order] in communicator.cpp.
  options->threads = 1;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(setup.store, setup.rank, setup.world_size,
                                                      options);
}

}  // namespace zerotrain::comm_detail
