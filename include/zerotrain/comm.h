#pragma once
// The communication layer: one small asynchronous interface over c10d process
// groups (Gloo for CPU tensors, NCCL for CUDA tensors). See docs/architecture.md,
// "Communication".
//
//   auto comm = zerotrain::init_distributed();          // torchrun, mpirun, Slurm or 1 rank
//   auto h = comm->reduce_scatter(shard, flat_grads, zerotrain::ReduceOp::kAvg);
//   ...                                                   // overlap with compute
//   h.wait();                                             // throws CommError on failure

#include <ATen/core/Tensor.h>
#include <c10/util/intrusive_ptr.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace c10d {
class ProcessGroup;
class Store;
}  // namespace c10d

namespace zerotrain {

class Config;

enum class ReduceOp { kSum, kAvg, kMax };

/// The collectives the layer offers; the index of each in CommStats.
enum class Collective { kAllReduce = 0, kReduceScatter, kAllGather, kBroadcast, kBarrier };
inline constexpr int kNumCollectives = 5;

/// Whether a collective may overwrite its input: a scratch buffer (a
/// gradient bucket) lets Gloo's reduce-scatter reduce in place instead of in a
/// copy of the input. The output is the same either way.
enum class InputUse { kPreserve, kScratch };

const char* to_string(ReduceOp op);
const char* to_string(Collective c);  // "all_reduce", "reduce_scatter", ...

/// Policy for a communicator. The config's `comm` section gives the defaults;
/// ZEROTRAIN_COMM_TIMEOUT (seconds) and ZEROTRAIN_CHECK_COLLECTIVES (0 or 1)
/// override it, and explicit values in code override both.
struct CommOptions {
  /// Bound on every collective and on rendezvous. DeepSpeed's default: 10 minutes.
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  /// Debug mode: before each collective, check that every rank issues the same
  /// operation with the same dtype, size and sequence number.
  bool check_collectives = false;

  static CommOptions from_config(const Config& config);
  /// These options with ZEROTRAIN_COMM_TIMEOUT / ZEROTRAIN_CHECK_COLLECTIVES
  /// applied; a malformed value is an error naming the variable.
  CommOptions with_environment() const;
};

/// Accounting for one kind of collective on this rank.
struct CollectiveStats {
  int64_t calls = 0;
  /// Logical payload: the full tensor of an all-reduce or broadcast, the full
  /// (N-chunk) buffer of a reduce-scatter or all-gather.
  int64_t payload_bytes = 0;
  /// Bytes this rank sends, by the algorithm the backend actually runs (ring
  /// formulas: all-gather and reduce-scatter (N-1)/N of the full size, all-reduce
  /// twice that). See Note [Wire bytes follow the backend's algorithm].
  int64_t wire_bytes = 0;
  /// The algorithm the wire bytes assume, e.g. "ring", or "all-reduce then slice"
  /// where the backend has no true reduce-scatter. Empty until the first call.
  std::string algorithm;
};

struct CommStats {
  int world_size = 1;
  std::array<CollectiveStats, kNumCollectives> per_collective{};

  const CollectiveStats& operator[](Collective c) const {
    return per_collective[static_cast<size_t>(c)];
  }
  int64_t total_wire_bytes() const;
  /// A table, one line per collective that ran.
  std::string to_string() const;
};

/// A collective failed, timed out, or (in debug mode) did not match across
/// ranks. what() names the operation, its sequence number, dtype and size, and
/// the ranks that were missing.
class CommError : public std::runtime_error {
 public:
  CommError(const std::string& message, Collective op, uint64_t sequence,
            std::vector<int> missing_ranks);
  Collective op() const noexcept { return op_; }
  /// 1-based position of the collective in this communicator's issue order.
  uint64_t sequence() const noexcept { return sequence_; }
  const std::vector<int>& missing_ranks() const noexcept { return missing_ranks_; }

 private:
  Collective op_;
  uint64_t sequence_;
  std::vector<int> missing_ranks_;
};

namespace comm_detail {
struct State;
struct PendingOp;
}  // namespace comm_detail

/// An issued collective. wait() blocks until it and every collective issued
/// before it on the same communicator have completed (they complete in issue
/// order), then makes the results visible: on CUDA, the current stream waits on
/// the communication stream through an event, without blocking the host.
/// Dropping a handle without waiting is allowed: the operation still completes
/// and a later wait() or Communicator::synchronize() reports its failure.
class CommHandle {
 public:
  CommHandle() = default;  // an already completed no-op
  void wait();
  /// Non-blocking: whether the backend has finished the collective (on CUDA,
  /// whether its end event has passed). wait() is still needed to make the
  /// results visible and to run the finishing steps of coalesced forms.
  bool is_completed() const;
  uint64_t sequence() const noexcept;

  /// Internal: handles come from Communicator's collectives.
  CommHandle(std::shared_ptr<comm_detail::State> state, std::shared_ptr<comm_detail::PendingOp> op);

 private:
  std::shared_ptr<comm_detail::State> state_;
  std::shared_ptr<comm_detail::PendingOp> op_;
};

/// Collectives over one c10d process group. Tensors must be contiguous; every
/// rank must call the same collectives in the same order (debug mode checks it).
/// Thread-safe: calls are serialized, and the issue order is the order in which
/// calls acquire the communicator.
class Communicator {
 public:
  /// Wraps an existing process group (for example torch.distributed's group,
  /// passed from Python), so that no second communicator is opened. `store` is
  /// the group's rendezvous store; the layer keeps its health records and debug
  /// checks under a private prefix in it. Without a store, failures still raise
  /// CommError but cannot name missing ranks, and debug mode is unavailable.
  static std::shared_ptr<Communicator> adopt(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                             c10::intrusive_ptr<c10d::Store> store,
                                             CommOptions options = {});
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const noexcept;
  int world_size() const noexcept;
  const CommOptions& options() const noexcept;

  /// In place on `tensor`.
  CommHandle all_reduce(const at::Tensor& tensor, ReduceOp op = ReduceOp::kSum);
  /// `input` holds world_size equal chunks; this rank's reduced chunk lands in
  /// `output` (numel = input.numel() / world_size).
  /// With InputUse::kScratch the input's contents are undefined afterwards.
  CommHandle reduce_scatter(const at::Tensor& output, const at::Tensor& input,
                            ReduceOp op = ReduceOp::kSum, InputUse use = InputUse::kPreserve);
  /// This rank's `input` lands at chunk rank() of the flat `output`
  /// (numel = world_size * input.numel()).
  CommHandle all_gather(const at::Tensor& output, const at::Tensor& input);
  /// In place: every rank ends with root's `tensor`.
  CommHandle broadcast(const at::Tensor& tensor, int root);
  CommHandle barrier();

  // Coalesced forms: one collective for many tensors of one dtype and device,
  // packed into a single flat buffer (one sequence number, one call in the stats).
  CommHandle all_reduce_coalesced(const std::vector<at::Tensor>& tensors,
                                  ReduceOp op = ReduceOp::kSum);
  CommHandle reduce_scatter_coalesced(const std::vector<at::Tensor>& outputs,
                                      const std::vector<at::Tensor>& inputs,
                                      ReduceOp op = ReduceOp::kSum);
  CommHandle all_gather_coalesced(const std::vector<at::Tensor>& outputs,
                                  const std::vector<at::Tensor>& inputs);
  CommHandle broadcast_coalesced(const std::vector<at::Tensor>& tensors, int root);

  /// Waits for every collective issued so far.
  void synchronize();

  /// Collective: every rank calls it, with the same names in the same order.
  /// A second communicator over the same ranks, with a process group of its
  /// own (its own Gloo worker thread, or NCCL communicator and stream), so
  /// that its collectives never queue behind this one's; it has its own
  /// sequence numbers, accounting and the same failure contract. See Note
  /// [Gathers and reductions travel on separate channels] (communicator.cpp).
  std::shared_ptr<Communicator> open_channel(const std::string& name);

  CommStats stats() const;
  void reset_stats();

  /// The underlying group, e.g. to hand to another library.
  c10::intrusive_ptr<c10d::ProcessGroup> process_group() const;

  /// Internal: use init_distributed() or adopt().
  explicit Communicator(std::shared_ptr<comm_detail::State> state);

 private:
  std::shared_ptr<comm_detail::State> state_;
};

}  // namespace zerotrain
