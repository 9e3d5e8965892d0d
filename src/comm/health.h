#pragma once
// Liveness and progress of every rank, kept in the rendezvous store, so that a
// failed or timed-out collective can name the ranks that were missing.
//
// Note [Naming the missing ranks]
// A backend error says little ("Connection closed by peer", "Timed out waiting
// 3000ms"). To say which ranks were missing, every rank runs a heartbeat thread
// that writes one small record to the store each interval: a beat counter, the
// sequence number of its last issued collective, and, once it has failed, the
// collective it failed in. Writing is O(1) per rank per interval and nothing is
// read on the fast path. When collective #S fails, the failing rank first
// publishes its own failure, then reads every record twice, a few intervals
// apart. A rank is missing when its beat did not advance (the process died or
// is stopped) or when it is alive but has not issued #S yet; a rank that failed
// too is not missing, it is a fellow survivor. The ranks that are gone come
// first in the list, the live ones that are behind after them: a survivor on
// one channel may see a live peer that is still busy on the other channel,
// and the dead rank is the cause to name first. If the store itself does not
// answer, the rank hosting it (rank 0, unless torchrun's agent hosts it) is
// reported as the missing one. The store host lingers briefly after its own
// failure so that the other survivors can finish their diagnosis.
// The records go through a client of the store of their own, with a short
// timeout: a long blocking wait on the shared client (the debug check waits
// there) would otherwise stall the heartbeat and make a live rank look dead,
// and a frozen store host must not hold the diagnosis for the full timeout.

#include <zerotrain/comm.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace zerotrain::comm_detail {

/// Where the store lives, for messages and for blaming the right rank.
struct StoreInfo {
  std::string address;    // "host:port", or "" when in-process
  int host_rank = -1;     // the rank hosting the store; -1 for an external host (torchrun's agent)
};

struct Diagnosis {
  std::vector<int> missing;
  std::string text;  // one line per rank that is not where it should be
};

class Health {
 public:
  /// Works on its own client of `store` (see Note [Naming the missing ranks]).
  Health(const c10::intrusive_ptr<c10d::Store>& store, StoreInfo where, int rank, int world_size,
         std::chrono::milliseconds timeout);
  ~Health();
  Health(const Health&) = delete;
  Health& operator=(const Health&) = delete;

  /// Called on issue; costs an atomic store, no I/O.
  void note_issued(uint64_t sequence);
  /// Publishes that this rank failed in collective `sequence` (before diagnosing).
  void report_failure(uint64_t sequence);
  /// Who was missing when collective `sequence` failed. Blocks about three
  /// heartbeat intervals; never throws.
  Diagnosis diagnose(uint64_t sequence);
  /// Records that this rank needs the store no longer (a mismatch found by the
  /// debug check needs no diagnosis).
  void mark_diagnosed();
  /// On the store host after a failure: keeps the store up (bounded) until the
  /// other live ranks have finished their diagnosis.
  void linger_for_peers();

  std::chrono::milliseconds interval() const noexcept { return interval_; }
  const StoreInfo& store_info() const noexcept { return where_; }

 private:
  struct Record {
    bool present = false;
    int64_t beat = 0;
    uint64_t issued = 0;
    uint64_t failed = 0;     // 0: has not failed
    bool diagnosed = false;  // finished its own diagnosis: no longer needs the store
  };
  void run();
  void publish();
  std::vector<Record> read_all();  // throws when the store does not answer

  c10::intrusive_ptr<c10d::Store> store_;
  StoreInfo where_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds interval_;

  std::atomic<uint64_t> issued_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<bool> diagnosed_{false};
  std::mutex diagnose_mutex_;  // failures may be diagnosed from two threads
  std::vector<int> missing_at_failure_;
  int64_t beat_ = 0;
  std::mutex publish_mutex_;  // one writer of the record at a time

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace zerotrain::comm_detail
