// Built when Gloo's headers were not found at configure time: LibTorch ships
// Gloo compiled in but not its headers (Debian's libgloo-dev provides them).

#include "comm/backends.h"

#include <c10/util/Exception.h>

namespace zerotrain::comm_detail {

bool gloo_available() { return false; }

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const BackendSetup&) {
  TORCH_CHECK(false,
              "zerotrain comm: this build has no Gloo (CPU collectives): Gloo's headers were not "
              "found when it was configured; install libgloo-dev (scripts/bootstrap.sh does) and "
              "reconfigure, or adopt a torch.distributed group instead");
}

}  // namespace zerotrain::comm_detail
