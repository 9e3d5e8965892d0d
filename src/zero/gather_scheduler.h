#pragma once
// Stage 3: when each unit's parameters are gathered and released.
//
// Note [Every gather is agreed in a request round]
// A gather is a collective, so every rank must issue the same gathers in the
// same order, yet ranks need not run the same units: data-dependent control
// flow may skip a unit on one rank, or run units in another order than the
// one recorded. A rank that needs a unit that is neither gathered nor in
// flight therefore never issues the gather directly: it joins a request round,
// a small all-gather in which every rank names the unit it needs now and the
// units it would prefetch (a fixed number of slots, -1 for none). Every rank
// then gathers the union of all requests, in increasing unit order, so the
// collectives match whatever each rank asked for, and each rank has what it
// needs. A rank with nothing to ask joins the rounds of the others at the end
// of each pass (end_pass(): rounds until every rank asks for nothing), which
// happens in Engine::backward before autograd runs and after it returns. When
// the requests of a round differ between ranks, every rank sees it in the
// same round: from then until the end of the pass no rank prefetches or
// releases a unit (so their gathered sets cannot drift apart), and rank 0
// warns once, naming the units. The end of a pass releases every unit that is
// not persistent, on every rank. In the usual case (every rank follows the
// recorded order) all requests agree and a round is one small all-gather per
// prefetch window. Never a hang, never a wrong value: at worst a pass keeps
// more units gathered than it needed.
//
// Note [Prefetch is a sliding window]
// Along the recorded order, the units after the one running that are
// gathered or in flight, plus those a round may request, stay within
// stage3_prefetch_bucket_size elements (and everything gathered within
// stage3_max_live_parameters). Each time a unit starts, the window slides:
// the units that now fit are requested, so one unit's gather is in flight
// while the previous one computes. In the recorded order every rank is in the
// same state at each trigger, so every rank joins the same rounds; a rank
// off the order asks for no prefetch, and its rounds show the divergence.
//
// Note [Gather each unit into its own buffer]
// Every unit is gathered by one all-gather of its own, written straight into
// its flat buffer: no packing buffer and no unpacking copy, so the memory a
// gather needs is the unit's (allgather_bucket_size, which coalesces the
// gathers of stages 1-2, has no effect here, as in DeepSpeed). Gloo stages an
// all-gather's output in a buffer of the same size before copying it out;
// NCCL writes in place.
//
// Note [Persistent units]
// A unit stays gathered for the whole run when it is small
// (stage3_param_persistence_threshold, counted per unit: a unit is gathered
// as one; the persistent units together are capped by
// stage3_model_persistence_threshold), or when nothing can gather it just in
// time: units without triggers (the root unit, and in C++ any unit not marked
// with zerotrain::Unit, since a LibTorch module has no forward hooks).
// Persistent units are gathered after every optimizer step.
//
// Note [A unit is released only once its triggers are seen]
// A unit with triggers is released only after its before-forward trigger has
// fired once. If a program calls a marked LibTorch layer through its own type
// (bypassing zerotrain::Unit's forward), the triggers never fire and the unit
// simply stays gathered, instead of its forward reading released storage.
// The exception is a unit sharded at creation (zerotrain::ShardedInit), which
// starts released: its program promised to call it through zerotrain::Unit.

#include <zerotrain/comm.h>
#include <zerotrain/engine.h>

#include "zero/flat_unit.h"
#include "zero/owned_state.h"

#include <functional>
#include <map>
#include <vector>

namespace zerotrain::zero {

/// The stage3_* settings the scheduler applies (element counts).
struct GatherPlan {
  int64_t prefetch_bucket_numel = 50'000'000;
  int64_t max_live_numel = 1'000'000'000;
  int64_t max_reuse_distance = 1'000'000'000;
  int64_t persistence_threshold = 100'000;
  int64_t model_persistence_threshold = INT64_MAX;
};

enum class Pass { kForward, kBackward };

class GatherScheduler {
 public:
  using Events = std::function<void(EngineEvent::Kind kind, int unit)>;

  /// `units` and `owned` must outlive the scheduler. `has_triggers[u]`: a
  /// front end calls unit u's triggers, so it can be gathered just in time.
  /// A unit gathered when the scheduler is built stays so until its
  /// before-forward trigger has been seen once (Note [A unit is released only
  /// once its triggers are seen]); one released already (sharded at
  /// creation) is gathered just in time from the start, or now if persistent.
  GatherScheduler(std::vector<FlatUnit>& units, OwnedState& owned, Communicator& comm, GatherPlan plan,
                  const std::vector<bool>& has_triggers, Events events);

  bool persistent(int u) const { return persistent_.at(static_cast<size_t>(u)) != 0; }
  /// Elements of full parameters gathered or in flight now, persistent units included.
  int64_t live_numel() const noexcept { return live_numel_; }
  /// The most live_numel() has been in the last window closed by
  /// close_window() (an optimizer step's), or since construction before the first.
  int64_t peak_live_numel() const noexcept { return last_peak_live_numel_ >= 0 ? last_peak_live_numel_ : peak_live_numel_; }
  void close_window() {
    last_peak_live_numel_ = peak_live_numel_;
    peak_live_numel_ = live_numel();
  }

  /// Unit `u` is about to run (before_forward / before_backward): returns when
  /// its parameters may be read. Joins a request round when it is neither
  /// gathered nor in flight.
  void need(int u, Pass pass);
  /// Unit `u` is done in `pass` (after_forward / after its backward): released
  /// unless persistent, reused within max_reuse_distance, or the pass diverged.
  void done_with(int u, Pass pass);
  /// The end of a pass: request rounds until no rank asks for anything, then
  /// every unit that is not persistent is released.
  void end_pass();
  /// The recorded order of a pass, checked across ranks by the caller; the
  /// scheduler prefetches along it.
  void set_order(Pass pass, std::vector<int> order);
  /// All ranks at once (outside passes): gathers `units` now, whatever their state.
  void gather_now(const std::vector<int>& units);
  /// All ranks at once: gathers `units` now and holds them gathered, through
  /// any forward or backward, until as many release_held() calls name them
  /// (gathered_parameters scopes, which may nest, and save_16bit_model).
  void gather_and_hold(const std::vector<int>& units);
  /// Ends one hold of each of `units`; those no longer held and not
  /// persistent are released, whether their triggers were seen or not.
  void release_held(const std::vector<int>& units);
  /// All ranks at once (after a step or a load): the units any rank holds
  /// gathered are gathered again on every rank from the updated shards (one
  /// small all-gather of which units those are, then their gathers).
  void refresh();
  /// How many request rounds found the ranks asking for different units.
  int64_t diverged_rounds() const noexcept { return diverged_rounds_; }

 private:
  struct InFlight {
    std::vector<int> units;
    CommHandle handle;
  };
  void round(const std::vector<int64_t>& request);
  void issue(const std::vector<int>& sorted_units);
  void wait(int u);
  void wait_all();
  void release(int u);
  /// Frees a gathered unit's buffer (kGathered -> kSharded), keeping live_numel_ in step.
  void free_unit(int u);
  std::vector<int64_t> request_for(int u, Pass pass);
  bool reused_soon(int u) const;
  c10::Device device() const { return units_.front().flat_params().device(); }

  std::vector<FlatUnit>& units_;
  OwnedState& owned_;
  Communicator& comm_;
  GatherPlan plan_;
  Events events_;
  std::vector<char> persistent_;
  std::vector<char> observed_;  // its before-forward trigger has fired
  std::vector<char> keep_;      // kept after forward for reuse in backward
  std::vector<int> holds_;      // gather_and_hold() calls not yet released
  int slots_ = 1;  // per rank per round: the unit needed and the prefetch candidates

  std::map<Pass, std::vector<int>> order_;
  std::map<Pass, size_t> position_;  // next expected index in order_[pass]
  std::vector<int64_t> in_flight_of_;  // key into flights_, -1 when none
  std::map<int64_t, InFlight> flights_;
  int64_t next_flight_ = 0;
  bool diverged_ = false;  // this pass: requests differed; no prefetch, no release
  bool warned_ = false;
  int64_t diverged_rounds_ = 0;
  int64_t live_numel_ = 0;            // units not sharded: counted as the scheduler changes their state
  int64_t peak_live_numel_ = 0;       // in the window open now
  int64_t last_peak_live_numel_ = -1;  // in the last window closed
};

}  // namespace zerotrain::zero
