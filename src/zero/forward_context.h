#pragma once
// Note [Forwards inside activation checkpointing]
// A checkpointed forward (src/activation/checkpoint.cpp) runs under no-grad
// and is run again, under grad, inside backward. The triggers of the units it
// contains must still mean what they say, so the checkpoint marks the thread
// while it runs them:
// - kCheckpointed: the first run. It is a training forward although grad mode
//   is off: the units' order is recorded and they count as having run (a
//   unit not seen would be taken for a skipped one and get no gradient).
// - kRecompute: the run inside backward. A unit entered now is about to be
//   differentiated, so before_forward is its before-backward trigger (stage 3
//   gathers it for backward and keeps it until its gradients are done);
//   after_forward does nothing (the unit is released after its backward, as
//   any unit is), and no before-backward hooks go on its outputs (it already
//   had its trigger).
// The flag is per thread, like LibTorch's grad mode, because the recompute
// runs on whichever thread autograd runs the checkpoint's backward.

namespace zerotrain::zero {

enum class ForwardKind { kPlain, kCheckpointed, kRecompute };

/// The kind of the forward running on this thread.
ForwardKind current_forward_kind() noexcept;

/// Sets the kind for its lifetime and restores the one before.
class ForwardKindScope {
 public:
  explicit ForwardKindScope(ForwardKind kind) noexcept;
  ~ForwardKindScope();
  ForwardKindScope(const ForwardKindScope&) = delete;
  ForwardKindScope& operator=(const ForwardKindScope&) = delete;

 private:
  ForwardKind previous_;
};

}  // namespace zerotrain::zero
