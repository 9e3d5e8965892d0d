#pragma once
// Construction of the c10d backends. Each lives in its own translation unit
// because each needs third-party headers (Gloo's, NCCL's) that nothing else
// should see; a build without them compiles the *_unavailable.cpp variant,
// whose factory raises a clear error instead.

#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <string>

namespace c10d {
class Backend;
class Store;
}  // namespace c10d

namespace zerotrain::comm_detail {

struct BackendSetup {
  c10::intrusive_ptr<c10d::Store> store;  // a prefix of its own per backend
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::chrono::milliseconds timeout{600000};
  std::string master_addr;  // picks Gloo's network interface (loopback for a local job)
};

bool gloo_available();
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const BackendSetup& setup);

/// NCCL compiled in and a GPU visible.
bool nccl_available();
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const BackendSetup& setup);

}  // namespace zerotrain::comm_detail
