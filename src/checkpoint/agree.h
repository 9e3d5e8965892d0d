#pragma once
// Collective bookkeeping for checkpoint calls: every rank learns whether every
// other rank succeeded before anything is committed, so a failure on one rank
// becomes an error on all of them instead of a hang or a half-done load.

#include <zerotrain/comm.h>

#include "comm/gather_values.h"

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zerotrain::ckpt {

/// `my_error` is empty on success. Returns when every rank succeeded; else
/// throws on every rank: this rank's own error, or the ranks that failed.
void agree(Communicator& comm, c10::Device device, const std::string& my_error, const std::string& what);

using comm_detail::all_gather_values;  // src/comm/gather_values.h

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

}  // namespace zerotrain::ckpt
