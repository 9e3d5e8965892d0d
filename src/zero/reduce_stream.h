#pragma once
// Which CUDA stream the gradient reductions run on, whichever thread runs them.
//
// Note [Reductions run on the backward's stream]
// A unit's reduction is launched from the gradient hook of its last parameter
// (autograd's device thread) or from end_backward (the thread that called
// backward()), and retired on either. Each thread has its own current stream,
// and c10d orders a collective after the issuing thread's current stream and
// its wait() before the waiting thread's. Packing a bucket, issuing, waiting,
// and adding the result into the gradient shard must therefore all happen on
// one stream, or a bucket could be rewritten while NCCL still reads it. That
// stream is the one current on the calling thread when backward() starts
// (the user's stream, usually the default one): every launch and retire runs
// under a guard that makes it current. A gradient produced on another stream
// (autograd runs each node on its forward op's stream) is waited for with an
// event before its unit is packed, and at the end of backward the caller's
// stream waits for the reductions, so step() sees the reduced gradients
// whatever stream it runs on. On the CPU (and any device without streams)
// all of this is a no-op: the Gloo backend finishes work before wait()
// returns.

#include <c10/core/Device.h>
#include <c10/core/Stream.h>

#include <optional>

namespace zerotrain::zero {

class ReduceStream {
 public:
  /// On the thread that calls backward(): its current stream on `device`
  /// becomes the reduction stream (CUDA only).
  void begin(const c10::Device& device);
  /// In a gradient hook: when the calling thread's current stream is another,
  /// the reduction stream waits for what that stream has queued so far.
  void after_gradient() const;
  /// The stream to make current around a launch or retire (nullopt: none).
  std::optional<c10::Stream> stream() const { return stream_; }
  /// On the thread that called backward(), after every reduction retired:
  /// its current stream waits for the reduction stream.
  void join_caller() const;

 private:
  std::optional<c10::Stream> stream_;
};

}  // namespace zerotrain::zero
