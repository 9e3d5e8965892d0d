#include "comm/wire_model.h"

namespace zerotrain::comm_detail {

BackendKind backend_kind(const std::string& name) {
  if (name == "gloo") return BackendKind::kGloo;
  if (name == "nccl") return BackendKind::kNccl;
  return BackendKind::kOther;
}

bool backend_supports_avg(BackendKind backend) { return backend == BackendKind::kNccl; }

namespace {

int64_t ring_share(int64_t full_bytes, int n) { return full_bytes * (n - 1) / n; }

/// Children of `rank` in Gloo's binomial broadcast tree rooted at `root`.
int binomial_children(int rank, int root, int n) {
  const int vrank = (rank - root + n) % n;
  int children = 0;
  for (int step = 1; step < n; step <<= 1) {
    if (vrank < step && vrank + step < n) ++children;
  }
  return children;
}

}  // namespace

WireCost wire_cost(BackendKind backend, Collective op, int64_t payload, int n, int rank,
                   int root) {
  if (n <= 1 || op == Collective::kBarrier) {
    return {0, op == Collective::kBarrier ? "barrier" : "local (one rank)"};
  }
  const char* ring = backend == BackendKind::kOther ? "ring (assumed; unknown backend)" : "ring";
  switch (op) {
    case Collective::kAllReduce:
      return {2 * ring_share(payload, n), ring};
    case Collective::kReduceScatter:
      if (backend == BackendKind::kGloo) return {2 * ring_share(payload, n), "all-reduce then slice"};
      return {ring_share(payload, n), ring};
    case Collective::kAllGather:
      return {ring_share(payload, n), ring};
    case Collective::kBroadcast:
      if (backend == BackendKind::kGloo) {
        return {payload * binomial_children(rank, root, n), "binomial tree"};
      }
      return {rank == (root - 1 + n) % n ? 0 : payload, ring};
    case Collective::kBarrier:
      break;
  }
  return {0, ""};
}

}  // namespace zerotrain::comm_detail
