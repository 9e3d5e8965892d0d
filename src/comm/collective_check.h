#pragma once
// Debug mode (CommOptions::check_collectives): before each collective, every
// rank publishes what it is about to issue and compares with all the others.
//
// Note [Checking collectives across ranks]
// Mismatched collectives (one rank all-gathers while another reduce-scatters,
// or the sizes differ) are the main cause of ZeRO hangs in the wild: the
// backend pairs the wrong messages and waits forever or corrupts data. The
// check runs before the collective reaches the backend. Rank r writes
// check/<seq>/<r> = "<op> <dtype>[<numel>]" to the store, waits (bounded by the
// timeout) for every rank's entry of the same sequence number, and compares. A
// difference raises CommError on every rank with each rank's view; a rank that
// never publishes is reported like a missing rank. Once a rank has passed #s,
// every rank has published #s, so each rank deletes its own entry of #s-2: the
// store holds at most two entries per rank. Costs a few store round trips per
// collective, which is why it is opt-in.

#include <zerotrain/comm.h>

#include <string>

namespace zerotrain::comm_detail {

class Health;

class CollectiveCheck {
 public:
  CollectiveCheck(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                  std::chrono::milliseconds timeout);
  ~CollectiveCheck();

  /// Throws CommError (naming `op` and `sequence`) on a mismatch, or when ranks
  /// do not reach the check within the timeout; `health` (may be null) names why.
  void check(uint64_t sequence, Collective op, const std::string& descriptor, Health* health);

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds timeout_;
};

}  // namespace zerotrain::comm_detail
