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

#include <zerotrain/activation_checkpointing.h>
#include <zerotrain/sharded_init.h>
#include <zerotrain/units.h>

#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <tuple>
#include <type_traits>
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
  /// `options`: the config's activation_checkpointing settings for a
  /// recomputed layer; `recompute_all`: InitOptions::recompute_units.
  void attach(std::weak_ptr<UnitTriggers> triggers, int unit, checkpointing::CheckpointOptions options,
              bool recompute_all);

  /// Recompute this layer's forward in backward instead of keeping its
  /// activations (activation checkpointing). The layer's forward must take
  /// tensors and return a tensor.
  void set_recompute(bool on = true) noexcept { recompute_ = on; }
  bool recomputes() const noexcept { return recompute_; }

 protected:
  const checkpointing::CheckpointOptions& checkpoint_options() const noexcept { return options_; }
  /// A recomputed layer whose forward is not tensors -> tensor.
  [[noreturn]] void recompute_unsupported() const;

  /// Before the layer's forward; returns the attached triggers (or null).
  std::shared_ptr<UnitTriggers> enter() const;
  /// After it: after_forward and the before-backward hooks on `outputs`.
  void leave(const std::shared_ptr<UnitTriggers>& triggers, const std::vector<at::Tensor>& outputs) const;

 private:
  std::weak_ptr<UnitTriggers> triggers_;
  int unit_ = -1;
  bool recompute_ = false;
  checkpointing::CheckpointOptions options_;
};

/// Whether Impl::forward(Args...) maps tensors to a tensor (what a recomputed
/// layer needs).
template <typename Impl, typename... Args>
constexpr bool tensors_to_tensor() {
  if constexpr (sizeof...(Args) == 0 || !(std::is_same_v<std::decay_t<Args>, at::Tensor> && ...)) {
    return false;
  } else {
    return std::is_same_v<decltype(std::declval<Impl&>().forward(std::declval<Args>()...)), at::Tensor>;
  }
}

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
/// on the outputs). Without an engine it is the layer itself. A recomputed
/// layer (set_recompute, or InitOptions::recompute_units) runs Impl::forward
/// inside checkpointing::checkpoint, between the same triggers.
template <typename Impl>
class UnitImpl : public Impl, public detail::UnitBoundary {
 public:
  using Impl::Impl;

  template <typename... Args>
  decltype(auto) forward(Args&&... args) {
    const std::shared_ptr<UnitTriggers> triggers = enter();
    if (recomputes() && c10::GradMode::is_enabled()) {
      if constexpr (detail::tensors_to_tensor<Impl, Args...>()) {
        at::Tensor out = checkpointing::checkpoint(
            checkpoint_options(), [this](const auto&... xs) { return Impl::forward(xs...); }, args...);
        leave(triggers, {out});
        return out;
      } else {
        recompute_unsupported();
      }
    }
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
