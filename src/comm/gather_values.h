#pragma once
// A few host values from every rank, for bookkeeping collectives (checkpoint
// agreement, progress reports, stage 3's request rounds). One all_gather, on
// the host when the group has a CPU backend, else on `device` (Note [Host
// values travel on the host], gather_values.cpp).

#include <zerotrain/comm.h>

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zerotrain::comm_detail {

/// Every rank's `values` (the same count on each), concatenated in rank order.
std::vector<int64_t> all_gather_values(Communicator& comm, c10::Device device,
                                       const std::vector<int64_t>& values);
std::vector<double> all_gather_values(Communicator& comm, c10::Device device,
                                      const std::vector<double>& values);
/// Every rank's `mine` (any length), in rank order.
std::vector<std::string> all_gather_text(Communicator& comm, c10::Device device, const std::string& mine);

}  // namespace zerotrain::comm_detail
