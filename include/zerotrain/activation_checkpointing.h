#pragma once
// Activation checkpointing: run part of a forward without keeping its
// activations and run it again in backward (DeepSpeed's
// deepspeed.checkpointing.checkpoint, torch.utils.checkpoint).
//
//   // in a module's forward, around any code of tensors:
//   x = zerotrain::checkpoint([&](const at::Tensor& h) { return block->forward(h); }, x);
//   // (also spelled zerotrain::checkpointing::checkpoint, as DeepSpeed's
//   // deepspeed.checkpointing.checkpoint)
//
//   // or, without touching the model: every zerotrain::Unit layer recomputed
//   zerotrain::InitOptions o;
//   o.recompute_units = true;        // or unit->set_recompute() on chosen layers
//
// The RNG states (CPU, and each GPU the inputs live on) are restored for the
// recompute, so dropout draws the same masks and gradients are exactly those
// of the plain run. The config's `activation_checkpointing` section sets the
// options of recomputed units (CheckpointOptions::from_config); see
// docs/activation_checkpointing.md for what each key does.

#include <zerotrain/config.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

namespace zerotrain::checkpointing {

/// Time spent in checkpointed forwards and their recomputes (the config's
/// `profile`). Shared by every checkpoint that points at it; thread-safe.
class CheckpointProfile {
 public:
  struct Totals {
    int64_t forwards = 0;
    double forward_ms = 0;
    int64_t recomputes = 0;
    double recompute_ms = 0;
    int64_t saved_input_bytes = 0;  // inputs kept for the recomputes, summed over forwards
  };
  void record_forward(double ms, int64_t saved_bytes);
  void record_recompute(double ms);
  Totals totals() const;

 private:
  mutable std::mutex mutex_;
  Totals totals_;
};

struct CheckpointOptions {
  /// Keep the saved inputs in host memory (pinned when on a GPU) until the
  /// recompute; inputs already in host memory stay where they are.
  bool cpu_checkpointing = false;
  /// Synchronize the inputs' devices at the start and the end of every
  /// checkpointed forward and recompute (a debugging aid; nothing on the CPU).
  bool synchronize_boundary = false;
  /// Null: not profiled.
  std::shared_ptr<CheckpointProfile> profile;

  /// The config's activation_checkpointing section; keys the engine rejects
  /// (zerotrain::unsupported_settings) are not read here.
  static CheckpointOptions from_config(const ActivationCheckpointingConfig& c,
                                       std::shared_ptr<CheckpointProfile> profile = nullptr);
};

using Function = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;

/// Runs fn(inputs) without keeping what it saves for backward and recomputes
/// it when autograd reaches its outputs (reentrant: the recompute's backward
/// runs inside the outer one and accumulates parameter gradients itself).
/// Outputs require grad even when no input does, so parameters inside fn get
/// their gradients. Inputs must not be modified in place before backward.
std::vector<at::Tensor> checkpoint_tensors(Function fn, const std::vector<at::Tensor>& inputs,
                                           const CheckpointOptions& options = {});

namespace detail {
template <typename Fn, size_t... I>
at::Tensor call_with(Fn& fn, const std::vector<at::Tensor>& in, std::index_sequence<I...>) {
  return at::Tensor(fn(in[I]...));
}
}  // namespace detail

/// fn(xs...) -> at::Tensor, checkpointed with `options`.
template <typename Fn, typename... Ts>
at::Tensor checkpoint(const CheckpointOptions& options, Fn fn, const at::Tensor& x, const Ts&... xs) {
  static_assert((std::is_convertible_v<const Ts&, const at::Tensor&> && ...), "checkpoint takes tensors");
  Function call = [fn = std::move(fn)](const std::vector<at::Tensor>& in) mutable {
    return std::vector<at::Tensor>{detail::call_with(fn, in, std::make_index_sequence<1 + sizeof...(Ts)>())};
  };
  return checkpoint_tensors(std::move(call), {x, xs...}, options).front();
}

/// fn(xs...) -> at::Tensor, checkpointed with default options.
template <typename Fn, typename... Ts>
at::Tensor checkpoint(Fn fn, const at::Tensor& x, const Ts&... xs) {
  return checkpoint(CheckpointOptions{}, std::move(fn), x, xs...);
}

}  // namespace zerotrain::checkpointing

namespace zerotrain {
/// zerotrain::checkpoint(fn, xs...): the same as checkpointing::checkpoint.
using checkpointing::checkpoint;
}  // namespace zerotrain
