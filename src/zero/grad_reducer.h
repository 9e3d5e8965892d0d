#pragma once
// The gradient pipeline: hooks on every parameter's gradient accumulator,
// units launched in a fixed order as soon as all their gradients are ready,
// buckets, and the reduce-scatter (or all-reduce) of each unit.
//
// Note [Launch units in one order on every rank]
// Every rank must issue the same collectives in the same order. Hooks fire in
// the order autograd happens to finish parameters, which the ranks need not
// share (and which differs from registration order when a module is reused),
// so a unit whose gradients are complete is not launched at once: units are
// launched strictly in reverse registration order, each as soon as it and all
// units before it in that order are complete. For the usual layer-by-layer
// model this is exactly the order gradients arrive, so nothing waits.
//
// Note [Overlap reduce-scatter with backward]
// A unit's collective is issued from the hook of its last gradient, while
// autograd goes on with earlier layers. With overlap_comm the reducer keeps two
// buckets: unit k packs into bucket k % 2 and only waits for unit k - 2, so one
// reduction is always in flight behind the compute. Without overlap_comm each
// unit is waited for right after it is issued (DeepSpeed's behaviour). Stages
// 0 and 1 reduce only in the backward of the boundary micro-batch (and never
// inside no_sync()); stage 2 reduces in every backward and adds the result to
// the gradient shard, so full gradients never outlive their unit's launch.
//
// Note [Averaging as DeepSpeed does]
// Gradients are averaged over ranks by scaling before a summing collective
// (1/N, or 1/gradient_predivide_factor) and after it (1, or factor/N), as
// DeepSpeed's stage 1/2 does; dividing before the sum keeps fp16 sums of
// scaled gradients from overflowing.

#include <zerotrain/engine.h>

#include "zero/flat_group.h"

#include <ATen/core/Tensor.h>

#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace zerotrain::zero {

/// Where the engine's gradients are; checked on every transition.
enum class GradState {
  kClean,         // zeroed; no backward since
  kAccumulating,  // backward ran; the boundary's reduction has not happened yet
  kReduced,       // owned_grads hold the boundary's averaged gradients
};
const char* to_string(GradState s);

struct ReducePlan {
  ShardingPolicy policy;
  bool overlap = false;         // zero_optimization.overlap_comm
  bool reduce_scatter = true;   // zero_optimization.reduce_scatter (false: all-reduce)
  at::ScalarType comm_dtype = at::kFloat;
  double predivide_factor = 1.0;
  bool ignore_unused_parameters = true;
};

class GradReducer {
 public:
  /// `groups` must outlive the reducer and not move.
  GradReducer(std::vector<FlatParamGroup>& groups, Communicator& comm, ReducePlan plan,
              std::function<void(const EngineEvent&)> observer);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  /// Before autograd runs. `reduce`: whether this backward reduces; `boundary`:
  /// whether it is the last micro-batch before an optimizer step.
  void begin_backward(bool reduce, bool boundary);
  /// After autograd returned: launches units whose parameters got no gradient
  /// (as zeros) and waits for every reduction.
  void end_backward();
  GradState state() const noexcept { return state_; }
  /// After the gradients were zeroed.
  void mark_clean() noexcept { state_ = GradState::kClean; }
  int64_t bucket_bytes() const;

 private:
  struct UnitRef {
    int group;
    int unit;
  };
  struct InFlight {
    UnitRef ref;
    CommHandle handle;
    at::Tensor result;  // the reduced part this rank keeps (a view of the bucket)
    int bucket;         // -1 when the unit was reduced where its gradients lie
  };

  void on_grad_ready(int group, int param);
  void launch_ready_units();
  void launch(const UnitRef& ref);
  at::Tensor pack(const UnitRef& ref, int bucket);
  void retire_front();
  void retire_bucket(int bucket);
  void emit(EngineEvent::Kind kind, int group, int unit, int param) const;

  std::vector<FlatParamGroup>& groups_;
  Communicator& comm_;
  ReducePlan plan_;
  std::function<void(const EngineEvent&)> observer_;
  std::vector<std::function<void()>> remove_hooks_;

  std::vector<UnitRef> launch_order_;  // reverse registration order
  std::vector<at::Tensor> buckets_;    // empty when every unit reduces in place
  double pre_scale_ = 1.0;
  double post_scale_ = 1.0;

  std::mutex mutex_;
  GradState state_ = GradState::kClean;
  bool reducing_ = false;
  bool boundary_ = false;
  size_t next_launch_ = 0;
  std::vector<std::vector<char>> param_ready_;
  std::vector<std::vector<int>> unit_pending_;
  std::vector<std::vector<char>> unit_launched_;
  std::deque<InFlight> in_flight_;
};

}  // namespace zerotrain::zero
