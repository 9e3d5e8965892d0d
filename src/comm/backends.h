#pragma once
// Construction of the c10d backends. Each lives in its own translation unit
// because each needs third-party headers (Gloo's, NCCL's) that nothing else
// should see; a build without them compiles the *_unavailable.cpp variant,
// whose factory raises a clear error instead.

#include <c10/core/DeviceType.h>
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <functional>
#include <string>

namespace c10d {
class Backend;
class ProcessGroup;
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
  /// NCCL only: make LOCAL_RANK's GPU the current device (creates its CUDA
  /// context). See Note [NCCL joins without a CUDA context] (nccl_backend.cpp).
  bool select_device = false;
};

bool gloo_available();
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const BackendSetup& setup);

/// NCCL compiled in and a GPU visible.
bool nccl_available();
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const BackendSetup& setup);

/// Which backends a process group gets, and which one is its default.
struct BackendChoice {
  bool gloo = true;          // CPU tensors
  /// Gloo carries CUDA tensors too (backend "gloo" asked for explicitly): several
  /// ranks may then share one GPU, which NCCL refuses.
  bool gloo_cuda = false;
  bool nccl = false;         // CUDA tensors
  bool nccl_default = false; // barrier and untyped calls go to NCCL
};

/// A process group over `setup.store` (each backend under its own prefix of
/// it) with the chosen backends. Collective: every rank calls it.
c10::intrusive_ptr<c10d::ProcessGroup> make_process_group(const BackendSetup& setup,
                                                          const BackendChoice& choice);

/// The name of the backend that serves `device` tensors in `group` ("gloo",
/// "nccl", ...), or "" when none does. A Gloo group may serve CUDA tensors
/// too, so "has a CUDA backend" does not mean NCCL.
std::string backend_name(c10d::ProcessGroup& group, c10::DeviceType device);

/// Builds another process group like a communicator's own on a fresh store
/// prefix: what Communicator::open_channel calls.
using GroupFactory =
    std::function<c10::intrusive_ptr<c10d::ProcessGroup>(const c10::intrusive_ptr<c10d::Store>& store)>;

}  // namespace zerotrain::comm_detail
