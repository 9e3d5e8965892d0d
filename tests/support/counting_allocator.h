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
#include <mutex>
#include <unordered_map>

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
    if (data == nullptr) return inner;  // nothing to count
    const c10::Device device = inner.device();
    const int64_t bytes = static_cast<int64_t>(n);
    {
      // The context is the data pointer itself, as LibTorch's raw_allocate
      // (used by some CPU kernels) requires.
      std::lock_guard<std::mutex> lock(mutex_);
      blocks_.emplace(data, Block{std::move(inner), bytes});
    }
    const int64_t now = live_.fetch_add(bytes) + bytes;
    int64_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    return c10::DataPtr(data, data, &release, device);
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

 private:
  struct Block {
    c10::DataPtr inner;
    int64_t bytes;
  };
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  static void release(void* p) {
    CountingAllocator& self = install();
    c10::DataPtr inner;  // frees the storage through the wrapped allocator, outside the lock
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      auto it = self.blocks_.find(p);
      if (it == self.blocks_.end()) return;
      inner = std::move(it->second.inner);
      self.live_.fetch_sub(it->second.bytes);
      self.blocks_.erase(it);
    }
  }

  c10::Allocator* base_;
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> peak_{0};
  std::mutex mutex_;
  std::unordered_map<void*, Block> blocks_;
};

}  // namespace zerotrain::testing
