// Built when the CUDA configuration is off.

#include "comm/backends.h"

#include <c10/util/Exception.h>

namespace zerotrain::comm_detail {

bool nccl_available() { return false; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const BackendSetup&) {
  TORCH_CHECK(false,
              "zerotrain comm: this build has no NCCL: it was configured with "
              "ZEROTRAIN_WITH_CUDA=OFF or against a LibTorch without CUDA");
}

}  // namespace zerotrain::comm_detail
