// See agree.h.

#include "checkpoint/agree.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace zerotrain::ckpt {

void agree(Communicator& comm, c10::Device device, const std::string& my_error, const std::string& what) {
  const std::vector<int64_t> failed =
      all_gather_values(comm, device, std::vector<int64_t>{my_error.empty() ? 0 : 1});
  std::vector<int> bad;
  for (size_t r = 0; r < failed.size(); ++r)
    if (failed[r] != 0) bad.push_back(static_cast<int>(r));
  if (bad.empty()) return;
  TORCH_CHECK(my_error.empty(), my_error, " (rank ", comm.rank(), ", ", what, ")");
  std::ostringstream ranks;
  for (size_t i = 0; i < bad.size(); ++i) ranks << (i ? ", " : "") << bad[i];
  TORCH_CHECK(false, "zerotrain: ", what, " failed on rank", bad.size() > 1 ? "s " : " ", ranks.str(),
              "; their error is in their own output. Nothing was changed on this rank.");
}

}  // namespace zerotrain::ckpt
