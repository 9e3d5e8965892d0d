// Activation checkpointing (include/zerotrain/activation_checkpointing.h):
// a custom autograd Function whose forward runs under no-grad and whose
// backward restores the RNG, recomputes under grad and runs the recompute's
// backward inside the outer one.
//
// Note [Checkpoints are reentrant in C++]
// PyTorch prefers the non-reentrant form (saved-tensor hooks), but LibTorch's
// C++ autograd engine has no default saved-tensor hooks: they exist only
// through the Python engine. The reentrant form composes with the engine all
// the same: the recompute's backward accumulates into the parameters'
// gradient accumulators, whose hooks (the core's) fire as in a plain
// backward, and stage 3's gathers are driven by the triggers inside the
// recompute (Note [Forwards inside activation checkpointing] in
// src/zero/forward_context.h). Its known weakness, outputs that do not
// require grad when no input does, is removed by a zero-element input that
// requires grad.

#include <zerotrain/activation_checkpointing.h>

#include "zero/forward_context.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/empty.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <mutex>
#include <optional>

namespace zerotrain::checkpointing {

void CheckpointProfile::record_forward(double ms, int64_t saved_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++totals_.forwards;
  totals_.forward_ms += ms;
  totals_.saved_input_bytes += saved_bytes;
}

void CheckpointProfile::record_recompute(double ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++totals_.recomputes;
  totals_.recompute_ms += ms;
}

CheckpointProfile::Totals CheckpointProfile::totals() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return totals_;
}

CheckpointOptions CheckpointOptions::from_config(const ActivationCheckpointingConfig& c,
                                                 std::shared_ptr<CheckpointProfile> profile) {
  CheckpointOptions o;
  o.cpu_checkpointing = c.cpu_checkpointing;
  o.synchronize_boundary = c.synchronize_checkpoint_boundary;
  if (c.profile) o.profile = profile ? std::move(profile) : std::make_shared<CheckpointProfile>();
  return o;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// The generator states the recompute must see: the CPU's, and each
/// accelerator's the inputs live on.
struct RngStates {
  struct Entry {
    at::Generator generator;
    at::Tensor state;
  };
  std::vector<Entry> entries;

  static std::vector<at::Generator> generators(const std::vector<at::Tensor>& inputs) {
    std::vector<at::Generator> out{at::detail::getDefaultCPUGenerator()};
    std::vector<c10::Device> seen;
    for (const at::Tensor& t : inputs) {
      if (!t.defined() || t.device().is_cpu()) continue;
      if (std::find(seen.begin(), seen.end(), t.device()) != seen.end()) continue;
      seen.push_back(t.device());
      out.push_back(at::globalContext().defaultGenerator(t.device()));
    }
    return out;
  }
  static RngStates capture(const std::vector<at::Generator>& gens) {
    RngStates s;
    for (const at::Generator& g0 : gens) {
      at::Generator g = g0;  // a handle; get_state is non-const
      std::lock_guard<std::mutex> lock(g.mutex());
      s.entries.push_back({g, g.get_state()});
    }
    return s;
  }
  void restore() const {
    for (const Entry& e : entries) {
      at::Generator g = e.generator;
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(e.state);
    }
  }
};

/// What backward needs, kept in the context as a capsule.
struct Saved : torch::CustomClassHolder {
  Function fn;
  CheckpointOptions options;
  RngStates rng;
  std::vector<c10::Device> devices;     // each input's device
  std::vector<bool> requires_grad;      // each input's
  std::vector<at::Tensor> host_inputs;  // cpu_checkpointing: the inputs in host memory
};

void synchronize(const std::vector<c10::Device>& devices) {
  std::vector<c10::Device> done;
  for (const c10::Device& d : devices) {
    if (d.is_cpu() || std::find(done.begin(), done.end(), d) != done.end()) continue;
    done.push_back(d);
    c10::impl::getDeviceGuardImpl(d.type())->synchronizeDevice(d.index());
  }
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // `anchor` is the zero-element input that requires grad (Note [Checkpoints
  // are reentrant in C++]); `inputs` are the user's.
  static variable_list forward(AutogradContext* ctx, c10::intrusive_ptr<Saved> saved, at::Tensor anchor,
                               at::TensorList inputs) {
    RECORD_FUNCTION("zerotrain::checkpointed_forward", std::vector<c10::IValue>());
    (void)anchor;
    const auto start = std::chrono::steady_clock::now();
    std::vector<at::Tensor> in(inputs.begin(), inputs.end());
    for (const at::Tensor& t : in) {
      saved->devices.push_back(t.device());
      saved->requires_grad.push_back(t.requires_grad());
    }
    if (saved->options.synchronize_boundary) synchronize(saved->devices);
    saved->rng = RngStates::capture(RngStates::generators(in));
    variable_list outputs;
    {
      // Note [Forwards inside activation checkpointing].
      zero::ForwardKindScope kind(zero::ForwardKind::kCheckpointed);
      outputs = saved->fn(in);
    }
    int64_t saved_bytes = 0;
    if (saved->options.cpu_checkpointing) {
      for (const at::Tensor& t : in) {
        const bool pin = !t.is_cpu();
        saved->host_inputs.push_back(t.to(at::TensorOptions().device(at::kCPU).pinned_memory(pin)));
      }
    } else {
      ctx->save_for_backward(in);
    }
    for (const at::Tensor& t : in) saved_bytes += static_cast<int64_t>(t.nbytes());
    if (saved->options.synchronize_boundary) synchronize(saved->devices);
    if (saved->options.profile) saved->options.profile->record_forward(ms_since(start), saved_bytes);
    ctx->saved_data["saved"] = c10::IValue::make_capsule(saved);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("zerotrain::checkpoint_recompute", std::vector<c10::IValue>());
    const auto start = std::chrono::steady_clock::now();
    auto saved = c10::static_intrusive_pointer_cast<Saved>(ctx->saved_data["saved"].toCapsule());
    std::vector<at::Tensor> stored =
        saved->options.cpu_checkpointing ? saved->host_inputs : ctx->get_saved_variables();
    std::vector<at::Tensor> in;
    for (size_t i = 0; i < stored.size(); ++i) {
      at::Tensor x = stored[i].to(saved->devices[i]).detach();
      x.requires_grad_(saved->requires_grad[i]);
      in.push_back(std::move(x));
    }
    if (saved->options.synchronize_boundary) synchronize(saved->devices);
    std::vector<at::Generator> gens;
    for (const RngStates::Entry& e : saved->rng.entries) gens.push_back(e.generator);
    const RngStates now = RngStates::capture(gens);
    variable_list outputs;
    {
      saved->rng.restore();
      struct Restore {
        const RngStates& s;
        ~Restore() { s.restore(); }
      } put_back{now};
      at::AutoGradMode grad(true);
      zero::ForwardKindScope kind(zero::ForwardKind::kRecompute);
      outputs = saved->fn(in);
    }
    TORCH_CHECK(outputs.size() == grad_outputs.size(), "zerotrain: a checkpointed function returned ",
                outputs.size(), " tensors in the recompute and ", grad_outputs.size(), " in the forward");
    std::vector<at::Tensor> roots, grads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (!outputs[i].defined() || !outputs[i].requires_grad() || !grad_outputs[i].defined()) continue;
      roots.push_back(outputs[i]);
      grads.push_back(grad_outputs[i]);
    }
    // Note [Checkpoints are reentrant in C++]: fills the parameters' .grad.
    if (!roots.empty()) torch::autograd::backward(roots, grads);
    if (saved->options.synchronize_boundary) synchronize(saved->devices);
    if (saved->options.profile) saved->options.profile->record_recompute(ms_since(start));
    variable_list out{at::Tensor(), at::Tensor()};  // the capsule, the anchor
    for (const at::Tensor& x : in) out.push_back(x.requires_grad() ? x.grad() : at::Tensor());
    return out;
  }
};

}  // namespace

std::vector<at::Tensor> checkpoint_tensors(Function fn, const std::vector<at::Tensor>& inputs,
                                           const CheckpointOptions& options) {
  TORCH_CHECK(fn, "zerotrain::checkpointing::checkpoint: no function given");
  for (size_t i = 0; i < inputs.size(); ++i)
    TORCH_CHECK(inputs[i].defined(), "zerotrain::checkpointing::checkpoint: input ", i, " is undefined");
  if (!c10::GradMode::is_enabled()) {
    // Nothing to save for backward: a plain call (evaluation).
    return fn(inputs);
  }
  auto saved = c10::make_intrusive<Saved>();
  saved->fn = std::move(fn);
  saved->options = options;
  // Zero elements: allocates nothing (Note [Checkpoints are reentrant in C++]).
  const at::Tensor anchor = at::empty({0}, at::TensorOptions().dtype(at::kFloat)).requires_grad_(true);
  return CheckpointFunction::apply(saved, anchor, at::TensorList(inputs));
}

}  // namespace zerotrain::checkpointing
