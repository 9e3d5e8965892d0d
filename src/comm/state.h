#pragma once
// The shared state behind Communicator and CommHandle.

#include <zerotrain/comm.h>

#include "comm/backends.h"
#include "comm/collective_check.h"
#include "comm/health.h"
#include "comm/wire_model.h"

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <atomic>
#include <condition_variable>
#include <thread>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <string>

namespace zerotrain::comm_detail {

/// What a collective is, for messages, the debug check and the accounting.
struct OpInfo {
  Collective op = Collective::kBarrier;
  std::string descriptor;  // "all_reduce(sum) float32[1000003]"
  int64_t payload_bytes = 0;
  int root = 0;
};

/// One issued collective, completed in issue order.
struct PendingOp {
  uint64_t sequence = 0;
  OpInfo info;
  c10::intrusive_ptr<c10d::Work> work;
  /// Runs once after `work` completed: copies out of a packed buffer, divides
  /// for kAvg when the backend cannot. On CUDA it only enqueues work.
  std::function<void()> finish;
  std::chrono::steady_clock::time_point issued_at;
  /// The host has waited for it (complete_through): results visible, `finish` run.
  std::atomic<bool> done{false};
  /// Whether `work` has finished once its wait() returns: true for Gloo, false
  /// for NCCL and any other backend, whose wait() may only make the current
  /// stream wait. See Note [Device work is watched until it finishes].
  bool finished_by_wait = true;
};

struct State {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  c10::intrusive_ptr<c10d::Store> store;  // prefixed; may be null
  CommOptions options;
  // What open_channel needs: the store the group was built on (null for an
  // adopted group without one), where it lives, how to build a sibling group,
  // and how many channels of each name were opened (the same on every rank).
  c10::intrusive_ptr<c10d::Store> group_store;
  StoreInfo where;
  GroupFactory make_group;
  std::map<std::string, int> channels_opened;
  int rank = 0;
  int world_size = 1;
  std::unique_ptr<Health> health;           // null without a store
  std::unique_ptr<CollectiveCheck> check;   // null unless options.check_collectives

  std::mutex issue_mutex;     // sequence numbers and backend calls, in one order
  uint64_t next_sequence = 1;

  std::mutex queue_mutex;     // guards `pending`, `on_device` and `stats`
  std::deque<std::shared_ptr<PendingOp>> pending;
  /// Done on the host but maybe still running on the device, oldest first.
  std::deque<std::shared_ptr<PendingOp>> on_device;
  CommStats stats;

  std::mutex complete_mutex;  // completion runs in issue order, one thread at a time
  /// Set once, by the first failure; every later call rethrows it.
  std::optional<CommError> failure;
  std::mutex failure_mutex;  // serializes make_failure

  // Note [The watchdog reports what nobody waits for] (communicator.cpp).
  std::thread watchdog;
  std::mutex watchdog_mutex;
  std::condition_variable watchdog_cv;
  bool stopping = false;

  ~State();
  /// Completes every pending op up to and including `sequence`.
  void complete_through(uint64_t sequence);
  /// Diagnoses the failure of `op`, records it as the communicator's failure
  /// (or returns the failure recorded first) and returns it.
  CommError make_failure(const PendingOp& op, const std::string& backend_message);
  [[noreturn]] void fail(const PendingOp& op, const std::string& backend_message);
  void throw_if_failed();
  void watch();
  /// The watchdog's look at one op: records a failure when its work failed or
  /// outlived the timeout; whether it finished successfully.
  bool inspect(const PendingOp& op, std::chrono::milliseconds tick);
  /// Drops the finished ops at the front of `on_device` (queue_mutex held).
  void retire_finished_on_device();
};

/// A communicator over `group`, whose backends were built on `group_store`
/// (its own records go under the prefix "comm" of it; null: no store).
/// `make_group` builds sibling groups for open_channel.
std::shared_ptr<Communicator> make_communicator(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                c10::intrusive_ptr<c10d::Store> group_store,
                                                StoreInfo where, CommOptions options,
                                                GroupFactory make_group);

}  // namespace zerotrain::comm_detail
