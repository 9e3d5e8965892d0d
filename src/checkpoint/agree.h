#pragma once
// Collective bookkeeping for checkpoint calls: every rank learns whether every
// other rank succeeded before anything is committed, so a failure on one rank
// becomes an error on all of them instead of a hang or a half-done load.

#include <zerotrain/comm.h>

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zerotrain::checkpoint {

/// `my_error` is empty on success. Returns when every rank succeeded; else
/// throws on every rank: this rank's own error, or the ranks that failed.
void agree(Communicator& comm, c10::Device device, const std::string& my_error, const std::string& what);

/// Every rank's `values` (the same count on each), concatenated in rank order.
std::vector<int64_t> all_gather_values(Communicator& comm, c10::Device device,
                                       const std::vector<int64_t>& values);

/// Runs `fn`, turning an exception into its message.
template <typename Fn>
std::string capture_error(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

}  // namespace zerotrain::checkpoint
