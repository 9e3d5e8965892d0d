#pragma once
// Accounting: what each collective costs on the wire, by the algorithm the
// backend actually runs.
//
// Note [Wire bytes follow the backend's algorithm]
// The engine's communication report must say what really crossed the network,
// so the bytes are modelled per backend rather than with one textbook formula:
//  * ring all-reduce sends 2(N-1)/N of the buffer from every rank; ring
//    all-gather and reduce-scatter send (N-1)/N of the full (N-chunk) buffer;
//  * c10d's Gloo backend has no reduce-scatter: it all-reduces the whole input
//    and keeps this rank's slice, so it costs an all-reduce, and the algorithm
//    is reported as "all-reduce then slice" rather than hidden;
//  * Gloo broadcasts along a binomial tree (a rank sends one copy per child);
//    NCCL along a ring (every rank but the root's predecessor sends one copy);
//  * a barrier moves no payload and is counted as zero bytes.
// NCCL may pick a tree instead of a ring for small all-reduces; its bytes per
// rank are then lower, and the model states "ring" as the upper bound it is.

#include <zerotrain/comm.h>

#include <string>

namespace zerotrain::comm_detail {

enum class BackendKind { kGloo, kNccl, kOther };

BackendKind backend_kind(const std::string& backend_name);

struct WireCost {
  int64_t wire_bytes = 0;
  const char* algorithm = "";  // a string literal: no allocation per collective
};

/// `payload_bytes` as in CollectiveStats: the full buffer.
WireCost wire_cost(BackendKind backend, Collective op, int64_t payload_bytes, int world_size,
                   int rank, int root);

/// Whether the backend reduces with ReduceOp::kAvg itself; otherwise the layer
/// sums and divides by the world size once the collective completes.
bool backend_supports_avg(BackendKind backend);

}  // namespace zerotrain::comm_detail
