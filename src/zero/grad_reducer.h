#pragma once
// The gradient pipeline: hooks on every parameter's gradient accumulator, a
// unit's gradients reduced as soon as the unit's backward is done, buckets,
// and the reduce-scatter (or all-reduce) of each unit.
//
// Note [Stage 2 never holds the full gradient]
// A unit's backward is done when the last of its parameters' gradient
// accumulators has fired (the core's after-backward trigger). At stage 2 the
// unit is then packed into a bucket of the communication dtype, its .grad
// tensors are dropped, and its reduce-scatter is issued; the reduced shard is
// added to the gradient shard when it retires. So the full-gradient bytes
// alive during backward are those of the units whose gradients are still
// arriving, plus the buckets in flight (one, or two with overlap_comm), never
// the whole model's. Units that receive no gradient are flushed as zeros when
// autograd returns.
//
// Note [Launch units in one order on every rank]
// Every rank must issue the same collectives in the same order, but hooks
// fire in whatever order autograd finishes parameters, which the ranks need
// not share. Units are therefore launched strictly in a launch order, each as
// soon as it and every unit before it in that order are done. The first
// reducing backward uses reverse registration order (units ordered by their
// first parameter); it records the order in which units' backward really
// finished, and at its end the ranks compare a hash of what they saw (one
// small all-gather, once per engine). If every rank saw the same order it
// becomes the launch order, so that from then on no finished unit waits
// behind one that finishes later; otherwise registration order stays and
// rank 0 warns.
//
// Note [Overlap reduce-scatter with backward]
// A unit's collective is issued from the hook of its last gradient, while
// autograd goes on with earlier layers. With overlap_comm the reducer keeps
// two buckets: the k-th launch packs into bucket k % 2 and only waits for the
// launch two before it, so one reduction is always in flight behind the
// compute. Without overlap_comm each unit is waited for right after it is
// issued (DeepSpeed's behaviour). Stages 0 and 1 reduce only in the backward
// of the boundary micro-batch (and never inside no_sync()); stage 2 reduces in
// every backward and adds the result to the gradient shard.
//
// Note [Averaging as DeepSpeed does]
// Gradients are averaged over ranks by scaling before a summing collective
// and after it, with DeepSpeed's factors: ZeRO's reduce-scatter divides by N
// before the sum; otherwise (stage 0, or reduce_scatter: false) the factors
// follow prescale_gradients (1/N before) or gradient_predivide_factor f (1/f
// before, f/N after). Dividing before the sum keeps fp16 sums of scaled
// gradients from overflowing. See ReducePlan::averaging.

#include <zerotrain/config.h>
#include <zerotrain/engine.h>

#include "zero/flat_unit.h"
#include "zero/owned_state.h"
#include "zero/reduce_stream.h"

#include <ATen/core/Tensor.h>

#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace zerotrain {
class Communicator;
}

namespace zerotrain::zero {

/// Where the engine's gradients are; checked on every transition.
enum class GradState {
  kClean,         // zeroed; no backward since
  kAccumulating,  // backward ran; the boundary's reduction has not happened yet
  kReduced,       // owned_grads hold the boundary's averaged gradients
};
const char* to_string(GradState s);

/// Where one unit's gradients are in the current backward; checked on every
/// transition.
enum class UnitGrads {
  kArriving,  // some of its parameters' gradients are still to come
  kDone,      // its backward is done; waiting for its turn in the launch order
  kInFlight,  // its reduction was issued
  kRetired,   // its reduction was waited for and stored
};
const char* to_string(UnitGrads s);

struct ReducePlan {
  bool shard_gradients = false;  // stage 2: keep only the reduced shard
  bool shard_owned = false;      // stages 1-2: reduce-scatter to owners (else all-reduce)
  bool overlap = false;          // zero_optimization.overlap_comm
  bool reduce_scatter = true;    // zero_optimization.reduce_scatter (false: all-reduce)
  at::ScalarType comm_dtype = at::kFloat;
  double pre_scale = 1.0;   // before the summing collective
  double post_scale = 1.0;  // after it
  bool ignore_unused_parameters = true;

  /// Note [Averaging as DeepSpeed does]: the two factors for N ranks.
  static std::pair<double, double> averaging(int world_size, bool zero_reduce_scatter, bool prescale,
                                             double predivide_factor);
};

class GradReducer {
 public:
  using EventSink = std::function<void(EngineEvent::Kind, int unit, int param, int in_flight)>;

  /// `units` and `owned` must outlive the reducer and not move. `param_names`
  /// are for messages. `unit_done` is the after-backward trigger: it runs
  /// (under the reducer's lock) when a unit's backward is done.
  GradReducer(std::vector<FlatUnit>& units, const ModelLayout& layout, OwnedState& owned,
              const std::vector<std::string>& param_names, Communicator& comm, ReducePlan plan,
              EventSink events, std::function<void(int unit)> unit_done);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  /// Before autograd runs. `reduce`: whether this backward reduces; `boundary`:
  /// whether it is the last micro-batch before an optimizer step.
  void begin_backward(bool reduce, bool boundary);
  /// Stage 3, right after begin_backward: `units` will get no gradient in
  /// this backward (their forward did not run), so they are done now and do
  /// not hold back the units after them in the launch order.
  void no_gradient(const std::vector<int>& units);
  /// After autograd returned: launches units whose parameters got no gradient
  /// (as zeros), runs `before_retire` (stage 3's end of pass, which other
  /// ranks' reductions may be waiting behind), waits for every reduction, and
  /// settles the launch order after the first reducing backward.
  void end_backward(const std::function<void()>& before_retire = nullptr);
  GradState state() const noexcept { return state_; }
  /// After the gradients were zeroed.
  void mark_clean() noexcept { state_ = GradState::kClean; }
  /// Bytes of the buckets (empty when every unit reduces in place).
  int64_t bucket_bytes() const;
  /// Units in the order their reductions are issued; Note [Launch units in one order on every rank].
  const std::vector<int>& launch_order() const noexcept { return order_; }

 private:
  struct InFlight {
    int unit;
    CommHandle handle;
    at::Tensor result;  // the reduced part this rank keeps (a view of the bucket or the unit's gradients)
    int bucket;         // -1 when the unit was reduced where its gradients lie
  };

  void on_grad_ready(int param);
  void mark_done(int unit);
  void launch_ready_units();
  void launch(int unit);
  at::Tensor pack(int unit, int bucket);
  void retire_front();
  void retire_bucket(int bucket);
  void settle_order();
  void advance(int unit, UnitGrads from, UnitGrads to);
  void emit(EngineEvent::Kind kind, int unit, int param) const;

  std::vector<FlatUnit>& units_;
  const ModelLayout& layout_;
  OwnedState& owned_;
  const std::vector<std::string>& param_names_;
  Communicator& comm_;
  ReducePlan plan_;
  EventSink events_;
  std::function<void(int)> unit_done_;
  std::vector<std::function<void()>> remove_hooks_;

  ReduceStream stream_;             // Note [Reductions run on the backward's stream]
  std::vector<int> order_;          // the launch order
  std::vector<at::Tensor> buckets_;  // empty when every unit reduces in place
  bool order_settled_ = false;

  std::mutex mutex_;
  GradState state_ = GradState::kClean;
  bool reducing_ = false;
  bool boundary_ = false;
  bool defer_retire_ = false;  // end_backward's launches wait for nothing of their own
  size_t next_launch_ = 0;
  std::vector<char> param_ready_;
  std::vector<int> unit_pending_;
  std::vector<UnitGrads> unit_grads_;
  std::vector<int> done_order_;  // this backward's units in the order their backward finished
  std::deque<InFlight> in_flight_;
};

}  // namespace zerotrain::zero
