// See Note [Reductions run on the backward's stream] in reduce_stream.h.

#include "zero/reduce_stream.h"

#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace zerotrain::zero {
namespace {

c10::Stream current_stream(const c10::Stream& like) {
  return c10::impl::getDeviceGuardImpl(like.device_type())->getStream(like.device());
}

/// `waiter` waits for the work queued on `on` so far; nothing when they are one stream.
void wait_for(const c10::Stream& waiter, const c10::Stream& on) {
  if (waiter == on) return;
  c10::Event done(on.device_type());
  done.record(on);
  done.block(waiter);
}

}  // namespace

void ReduceStream::begin(const c10::Device& device) {
  stream_.reset();
  if (device.is_cuda()) stream_ = c10::impl::getDeviceGuardImpl(device.type())->getStream(device);
}

void ReduceStream::after_gradient() const {
  if (stream_) wait_for(*stream_, current_stream(*stream_));
}

void ReduceStream::join_caller() const {
  if (stream_) wait_for(current_stream(*stream_), *stream_);
}

}  // namespace zerotrain::zero
