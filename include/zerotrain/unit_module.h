#pragma once
// zerotrain::Unit: marking a layer as a unit where it is registered.
//
//   // in the parent's constructor, one line where the layer is registered:
//   blocks->push_back(zerotrain::Unit<Block>(config));     // instead of Block(config)
//   // and, for the forward triggers, call it through the wrapper's type:
//   for (auto& b : *blocks) x = b->as<zerotrain::Unit<Block>>()->forward(x);
//
// zerotrain::Unit<Block> is a BlockImpl (every member, parameter name and
// method is the layer's own) whose forward() runs the engine's triggers
// around the layer's forward. Nothing inside the layer changes. A marked
// layer is a unit under every WrapPolicy, whether or not its forward is
// called through the wrapper; the triggers need the wrapper's type at the
// call site (LibTorch's forward is not virtual).

#include <zerotrain/sharded_init.h>
#include <zerotrain/units.h>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <tuple>
#include <utility>
#include <vector>

namespace zerotrain {

namespace detail {

/// Every zerotrain::Unit module is one: initialize() finds the marked
/// subtrees through it and attaches them to the engine's core.
class UnitBoundary {
 public:
  virtual ~UnitBoundary();
  /// Internal: called by initialize(); the engine keeps `triggers` alive.
  void attach(std::weak_ptr<UnitTriggers> triggers, int unit);

 protected:
  /// Before the layer's forward; returns the attached triggers (or null).
  std::shared_ptr<UnitTriggers> enter() const;
  /// After it: after_forward and the before-backward hooks on `outputs`.
  void leave(const std::shared_ptr<UnitTriggers>& triggers, const std::vector<at::Tensor>& outputs) const;

 private:
  std::weak_ptr<UnitTriggers> triggers_;
  int unit_ = -1;
};

/// Any output type not listed below carries no tensor the engine hooks.
template <typename T>
void collect_tensors(const T&, std::vector<at::Tensor>&) {}
inline void collect_tensors(const at::Tensor& t, std::vector<at::Tensor>& out) { out.push_back(t); }
inline void collect_tensors(const std::vector<at::Tensor>& ts, std::vector<at::Tensor>& out) {
  out.insert(out.end(), ts.begin(), ts.end());
}
template <typename A, typename B>
void collect_tensors(const std::pair<A, B>& p, std::vector<at::Tensor>& out);
template <typename... T>
void collect_tensors(const std::tuple<T...>& t, std::vector<at::Tensor>& out) {
  std::apply([&out](const auto&... x) { (collect_tensors(x, out), ...); }, t);
}
template <typename A, typename B>
void collect_tensors(const std::pair<A, B>& p, std::vector<at::Tensor>& out) {
  collect_tensors(p.first, out);
  collect_tensors(p.second, out);
}
}  // namespace detail

/// The layer Impl, marked as a unit: its forward runs the engine's triggers
/// around Impl::forward (before forward, after forward, and before backward
/// on the outputs). Without an engine it is the layer itself.
template <typename Impl>
class UnitImpl : public Impl, public detail::UnitBoundary {
 public:
  using Impl::Impl;

  template <typename... Args>
  decltype(auto) forward(Args&&... args) {
    const std::shared_ptr<UnitTriggers> triggers = enter();
    auto out = Impl::forward(std::forward<Args>(args)...);
    std::vector<at::Tensor> tensors;
    detail::collect_tensors(out, tensors);
    leave(triggers, tensors);
    return out;
  }

 private:
  // Initialised after Impl's constructor: shards the layer's parameters in
  // an open zerotrain::ShardedInit scope.
  detail::ShardAtCreation shard_at_creation_{*this};
};

/// The holder of a marked layer: zerotrain::Unit<Block>(args...) builds a
/// UnitImpl<BlockImpl>(args...). Register it where Block(args...) was.
template <typename Holder>
class Unit : public torch::nn::ModuleHolder<UnitImpl<typename Holder::ContainedType>> {
 public:
  using torch::nn::ModuleHolder<UnitImpl<typename Holder::ContainedType>>::ModuleHolder;
};

}  // namespace zerotrain
