// See Notes [Launch units in one order on every rank], [Overlap reduce-scatter
// with backward] and [Averaging as DeepSpeed does] in grad_reducer.h.

#include "zero/grad_reducer.h"

#include <ATen/ops/empty.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <sstream>

namespace zerotrain::zero {

const char* to_string(GradState s) {
  switch (s) {
    case GradState::kClean: return "clean";
    case GradState::kAccumulating: return "accumulating";
    case GradState::kReduced: return "reduced";
  }
  return "?";
}

namespace {

// Runs after AccumulateGrad has written a parameter's .grad.
class GradReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  explicit GradReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

}  // namespace

GradReducer::GradReducer(std::vector<FlatParamGroup>& groups, Communicator& comm, ReducePlan plan,
                         std::function<void(const EngineEvent&)> observer)
    : groups_(groups), comm_(comm), plan_(plan), observer_(std::move(observer)) {
  const int n = comm_.world_size();
  TORCH_CHECK(plan_.predivide_factor > 0, "zerotrain: gradient_predivide_factor must be positive, got ",
              plan_.predivide_factor);
  // Note [Averaging as DeepSpeed does]
  if (plan_.predivide_factor == 1.0) {
    pre_scale_ = 1.0 / n;
  } else {
    pre_scale_ = 1.0 / plan_.predivide_factor;
    post_scale_ = plan_.predivide_factor / n;
  }

  int64_t largest_unit = 0;
  bool reduce_in_place = !plan_.policy.gradients;
  for (int g = 0; g < static_cast<int>(groups_.size()); ++g) {
    const FlatParamGroup& G = groups_[static_cast<size_t>(g)];
    reduce_in_place = reduce_in_place && G.flat_params().scalar_type() == plan_.comm_dtype;
    for (int u = 0; u < static_cast<int>(G.units().size()); ++u) {
      launch_order_.push_back({g, u});
      largest_unit = std::max(largest_unit, G.units()[static_cast<size_t>(u)].layout.padded_numel());
    }
  }
  std::reverse(launch_order_.begin(), launch_order_.end());
  if (!reduce_in_place && !groups_.empty()) {
    const auto opts = groups_.front().flat_params().options().dtype(plan_.comm_dtype);
    for (int b = 0; b < (plan_.overlap ? 2 : 1); ++b)
      buckets_.push_back(at::empty({largest_unit}, opts));
  }

  for (int g = 0; g < static_cast<int>(groups_.size()); ++g) {
    const auto& params = groups_[static_cast<size_t>(g)].params();
    param_ready_.emplace_back(params.size(), 0);
    unit_pending_.emplace_back(groups_[static_cast<size_t>(g)].units().size(), 0);
    unit_launched_.emplace_back(groups_[static_cast<size_t>(g)].units().size(), 0);
    for (int p = 0; p < static_cast<int>(params.size()); ++p) {
      // The Variable only holds a weak reference to its accumulator: keep it.
      std::shared_ptr<torch::autograd::Node> acc =
          torch::autograd::impl::grad_accumulator(params[static_cast<size_t>(p)]);
      TORCH_INTERNAL_ASSERT(acc, "parameter without a gradient accumulator");
      const uintptr_t key = acc->add_post_hook(
          std::make_unique<GradReadyHook>([this, g, p] { on_grad_ready(g, p); }));
      remove_hooks_.push_back([acc, key] { acc->del_post_hook(key); });
    }
  }
}

GradReducer::~GradReducer() {
  for (auto& remove : remove_hooks_) remove();
  // Reductions still in flight (an exception left backward) must not outlive the buckets.
  for (auto& f : in_flight_) {
    try {
      f.handle.wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): the failure was already reported
    }
  }
}

int64_t GradReducer::bucket_bytes() const {
  int64_t b = 0;
  for (const auto& t : buckets_) b += static_cast<int64_t>(t.nbytes());
  return b;
}

void GradReducer::emit(EngineEvent::Kind kind, int group, int unit, int param) const {
  if (!observer_) return;
  observer_(EngineEvent{kind, group, unit, param, static_cast<int>(in_flight_.size())});
}

void GradReducer::begin_backward(bool reduce, bool boundary) {
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(state_ != GradState::kReduced,
              "zerotrain: backward() called again after the gradients of this accumulation "
              "boundary were reduced; call step() (or zero_grad()) first");
  TORCH_INTERNAL_ASSERT(in_flight_.empty());
  reducing_ = reduce;
  boundary_ = boundary;
  next_launch_ = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::fill(param_ready_[g].begin(), param_ready_[g].end(), 0);
    std::fill(unit_launched_[g].begin(), unit_launched_[g].end(), 0);
    const auto& units = groups_[g].units();
    for (size_t u = 0; u < units.size(); ++u) unit_pending_[g][u] = units[u].num_params;
  }
}

void GradReducer::on_grad_ready(int group, int param) {
  std::lock_guard<std::mutex> lock(mutex_);
  FlatParamGroup& G = groups_[static_cast<size_t>(group)];
  const at::Tensor& p = G.params()[static_cast<size_t>(param)];
  if (!G.grads_sharded()) {
    // A module-level zero_grad(set_to_none) dropped the view: autograd then
    // wrote a fresh tensor, which is the whole accumulated gradient.
    at::Tensor slot = G.grad_slot(param);
    if (p.grad().data_ptr() != slot.data_ptr()) {
      c10::NoGradGuard no_grad;
      slot.copy_(p.grad());
      p.mutable_grad() = slot;
    }
  }
  emit(EngineEvent::Kind::kGradReady, group, -1, param);
  if (!reducing_) return;
  const int unit = G.layout().unit_of(param);
  TORCH_CHECK(!unit_launched_[static_cast<size_t>(group)][static_cast<size_t>(unit)],
              "zerotrain: parameter '", G.name(param),
              "' received a gradient after its unit was already reduced in this backward pass "
              "(is it used by a second autograd pass inside one backward()?)");
  char& ready = param_ready_[static_cast<size_t>(group)][static_cast<size_t>(param)];
  if (ready) return;  // accumulated twice before its unit launched: still in .grad
  ready = 1;
  --unit_pending_[static_cast<size_t>(group)][static_cast<size_t>(unit)];
  launch_ready_units();
}

void GradReducer::launch_ready_units() {
  // Note [Launch units in one order on every rank]
  while (next_launch_ < launch_order_.size()) {
    const UnitRef ref = launch_order_[next_launch_];
    if (unit_pending_[static_cast<size_t>(ref.group)][static_cast<size_t>(ref.unit)] != 0) return;
    launch(ref);
    ++next_launch_;
  }
}

at::Tensor GradReducer::pack(const UnitRef& ref, int bucket) {
  FlatParamGroup& G = groups_[static_cast<size_t>(ref.group)];
  const Unit& u = G.units()[static_cast<size_t>(ref.unit)];
  if (bucket < 0) return G.unit_grads(u);  // reduced where it lies
  at::Tensor b = buckets_[static_cast<size_t>(bucket)].narrow(0, 0, u.layout.padded_numel());
  if (!G.grads_sharded()) {
    b.copy_(G.unit_grads(u));
    return b;
  }
  // Stage 2: the parameters' fresh gradients, zeros in the gaps, then drop them.
  int64_t end = 0;
  for (int i = 0; i < u.num_params; ++i) {
    const ParamSlot& slot = u.layout.slots()[static_cast<size_t>(i)];
    if (slot.offset > end) b.narrow(0, end, slot.offset - end).zero_();
    at::Tensor dst = b.narrow(0, slot.offset, slot.numel);
    const at::Tensor& p = G.params()[static_cast<size_t>(u.first_param + i)];
    if (p.grad().defined()) {
      dst.copy_(p.grad().reshape({-1}));
    } else {
      dst.zero_();  // unused in this backward: contributes zero, as in DeepSpeed
    }
    p.mutable_grad() = at::Tensor();
    end = slot.offset + slot.numel;
  }
  if (end < b.numel()) b.narrow(0, end, b.numel() - end).zero_();
  return b;
}

void GradReducer::launch(const UnitRef& ref) {
  RECORD_FUNCTION("zerotrain::reduce_unit", std::vector<c10::IValue>());
  FlatParamGroup& G = groups_[static_cast<size_t>(ref.group)];
  const Unit& u = G.units()[static_cast<size_t>(ref.unit)];
  int bucket = -1;
  if (!buckets_.empty()) {
    bucket = static_cast<int>(next_launch_ % buckets_.size());
    retire_bucket(bucket);
  }
  c10::NoGradGuard no_grad;
  at::Tensor send = pack(ref, bucket);
  if (pre_scale_ != 1.0) send.mul_(pre_scale_);

  InFlight f{ref, CommHandle(), send, bucket};
  if (plan_.policy.optimizer_states) {
    const auto [b, e] = u.layout.shard_range(comm_.rank());
    f.result = send.narrow(0, b, e - b);
    f.handle = plan_.reduce_scatter ? comm_.reduce_scatter(f.result, send, ReduceOp::kSum)
                                    : comm_.all_reduce(send, ReduceOp::kSum);
  } else {
    f.handle = comm_.all_reduce(send, ReduceOp::kSum);
  }
  unit_launched_[static_cast<size_t>(ref.group)][static_cast<size_t>(ref.unit)] = 1;
  in_flight_.push_back(std::move(f));
  emit(EngineEvent::Kind::kReduceLaunched, ref.group, ref.unit, -1);
  if (!plan_.overlap) retire_front();
}

void GradReducer::retire_front() {
  InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  f.handle.wait();
  FlatParamGroup& G = groups_[static_cast<size_t>(f.ref.group)];
  const Unit& u = G.units()[static_cast<size_t>(f.ref.unit)];
  c10::NoGradGuard no_grad;
  at::Tensor dest = G.owned_grads(u);
  if (G.grads_sharded()) {
    dest.add_(f.result, post_scale_);  // accumulate micro-batches in the shard
  } else {
    if (dest.data_ptr() != f.result.data_ptr()) dest.copy_(f.result);
    if (post_scale_ != 1.0) dest.mul_(post_scale_);
  }
  emit(EngineEvent::Kind::kReduceRetired, f.ref.group, f.ref.unit, -1);
}

void GradReducer::retire_bucket(int bucket) {
  while (std::any_of(in_flight_.begin(), in_flight_.end(),
                     [bucket](const InFlight& f) { return f.bucket == bucket; }))
    retire_front();
}

void GradReducer::end_backward() {
  std::lock_guard<std::mutex> lock(mutex_);
  emit(EngineEvent::Kind::kBackwardDone, -1, -1, -1);
  if (reducing_) {
    std::vector<std::string> unused;
    for (size_t g = 0; g < groups_.size(); ++g) {
      for (size_t p = 0; p < param_ready_[g].size(); ++p)
        if (!param_ready_[g][p]) unused.push_back(groups_[g].name(static_cast<int>(p)));
      std::fill(unit_pending_[g].begin(), unit_pending_[g].end(), 0);
    }
    launch_ready_units();  // units with parameters that got no gradient
    while (!in_flight_.empty()) retire_front();
    if (!unused.empty() && !plan_.ignore_unused_parameters) {
      std::ostringstream s;
      for (size_t i = 0; i < unused.size(); ++i) s << (i ? ", " : "") << "'" << unused[i] << "'";
      TORCH_CHECK(false, "zerotrain: these parameters received no gradient in this backward: ",
                  s.str(), " (zero_optimization.ignore_unused_parameters is false)");
    }
  }
  state_ = (reducing_ && boundary_) ? GradState::kReduced : GradState::kAccumulating;
}

}  // namespace zerotrain::zero
