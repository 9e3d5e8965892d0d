#pragma once
// An allocation counter independent of the engine's bookkeeping: it wraps
// LibTorch's CPU allocator and counts the bytes of every CPU tensor storage
// allocated after install(), live and at peak. Tests that bound memory read
// it around the phase they measure.

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

namespace zerotrain::testing {

class CountingAllocator final : public c10::Allocator {
 public:
  /// Puts the counter in front of the current CPU allocator (once per process).
  static CountingAllocator& install() {
    static CountingAllocator* self = [] {
      auto* a = new CountingAllocator(c10::GetCPUAllocator());
      c10::SetCPUAllocator(a, /*priority=*/255);
      return a;
    }();
    return *self;
  }

  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }
  /// The peak restarts from the bytes live now.
  void reset_peak() { peak_.store(live_.load()); }

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* ctx = new Context{std::move(inner), static_cast<int64_t>(n), this};
    const int64_t now = live_.fetch_add(ctx->bytes) + ctx->bytes;
    int64_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    return c10::DataPtr(data, ctx, &release, device);
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

 private:
  struct Context {
    c10::DataPtr inner;
    int64_t bytes;
    CountingAllocator* self;
  };
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  static void release(void* p) {
    auto* ctx = static_cast<Context*>(p);
    ctx->self->live_.fetch_sub(ctx->bytes);
    delete ctx;  // frees the storage through the wrapped allocator
  }

  c10::Allocator* base_;
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> peak_{0};
};

}  // namespace zerotrain::testing
