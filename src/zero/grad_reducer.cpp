// See Notes [Stage 2 never holds the full gradient], [Launch units in one
// order on every rank], [Overlap reduce-scatter with backward] and [Averaging
// as DeepSpeed does] in grad_reducer.h.

#include "zero/grad_reducer.h"

#include <zerotrain/comm.h>

#include "comm/gather_values.h"

#include <ATen/ops/empty.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/core/StreamGuard.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <iostream>
#include <numeric>
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

const char* to_string(UnitGrads s) {
  switch (s) {
    case UnitGrads::kArriving: return "arriving";
    case UnitGrads::kDone: return "done";
    case UnitGrads::kInFlight: return "in flight";
    case UnitGrads::kRetired: return "retired";
  }
  return "?";
}

std::pair<double, double> ReducePlan::averaging(int world_size, bool zero_reduce_scatter, bool prescale,
                                                double predivide_factor) {
  TORCH_CHECK(predivide_factor > 0, "zerotrain: gradient_predivide_factor must be positive, got ",
              predivide_factor);
  const double n = static_cast<double>(world_size);
  if (zero_reduce_scatter || prescale) return {1.0 / n, 1.0};
  return {1.0 / predivide_factor, predivide_factor / n};
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

uint64_t order_hash(const std::vector<int>& order) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (int u : order) {
    h ^= static_cast<uint64_t>(u) + 1;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

GradReducer::GradReducer(std::vector<FlatUnit>& units, const ModelLayout& layout, OwnedState& owned,
                         const std::vector<std::string>& param_names, Communicator& comm, ReducePlan plan,
                         EventSink events, std::function<void(int)> unit_done)
    : units_(units),
      layout_(layout),
      owned_(owned),
      param_names_(param_names),
      comm_(comm),
      plan_(plan),
      events_(std::move(events)),
      unit_done_(std::move(unit_done)) {
  // Note [Launch units in one order on every rank]: reverse registration order to begin with.
  order_.resize(units_.size());
  std::iota(order_.begin(), order_.end(), 0);
  const auto first_param = [this](int u) {
    const auto& ps = layout_.unit(u).params;
    return *std::min_element(ps.begin(), ps.end());
  };
  std::sort(order_.begin(), order_.end(), [&](int a, int b) { return first_param(a) > first_param(b); });

  const at::ScalarType model_dtype = units_.front().flat_params().scalar_type();
  const bool reduce_in_place = !plan_.shard_gradients && model_dtype == plan_.comm_dtype;
  if (!reduce_in_place) {
    int64_t largest = 0;
    for (const FlatUnit& u : units_) largest = std::max(largest, u.layout().flat.padded_numel());
    const auto opts = units_.front().flat_params().options().dtype(plan_.comm_dtype);
    for (int b = 0; b < (plan_.overlap ? 2 : 1); ++b) buckets_.push_back(at::empty({largest}, opts));
  }

  param_ready_.assign(static_cast<size_t>(layout_.num_params()), 0);
  unit_pending_.assign(units_.size(), 0);
  unit_grads_.assign(units_.size(), UnitGrads::kRetired);
  for (const FlatUnit& u : units_)
    for (size_t k = 0; k < u.params().size(); ++k) {
      const int p = u.layout().params[k];
      // The Variable only holds a weak reference to its accumulator: keep it.
      std::shared_ptr<torch::autograd::Node> acc = torch::autograd::impl::grad_accumulator(u.params()[k]);
      TORCH_INTERNAL_ASSERT(acc, "parameter without a gradient accumulator");
      const uintptr_t key =
          acc->add_post_hook(std::make_unique<GradReadyHook>([this, p] { on_grad_ready(p); }));
      remove_hooks_.push_back([acc, key] { acc->del_post_hook(key); });
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

void GradReducer::emit(EngineEvent::Kind kind, int unit, int param) const {
  if (events_) events_(kind, unit, param, static_cast<int>(in_flight_.size()));
}

void GradReducer::advance(int unit, UnitGrads from, UnitGrads to) {
  UnitGrads& s = unit_grads_[static_cast<size_t>(unit)];
  TORCH_INTERNAL_ASSERT(s == from, "unit '", units_[static_cast<size_t>(unit)].name(), "': gradients ",
                        to_string(s), ", expected ", to_string(from), " before becoming ", to_string(to));
  s = to;
}

void GradReducer::begin_backward(bool reduce, bool boundary) {
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(state_ != GradState::kReduced,
              "zerotrain: backward() called again after the gradients of this accumulation "
              "boundary were reduced; call step() (or zero_grad()) first");
  TORCH_INTERNAL_ASSERT(in_flight_.empty());
  reducing_ = reduce;
  boundary_ = boundary;
  stream_.begin(units_.front().flat_params().device());  // Note [Reductions run on the backward's stream]
  next_launch_ = 0;
  done_order_.clear();
  std::fill(param_ready_.begin(), param_ready_.end(), 0);
  for (size_t u = 0; u < units_.size(); ++u) {
    unit_pending_[u] = static_cast<int>(units_[u].params().size());
    unit_grads_[u] = UnitGrads::kArriving;  // counted in every backward: the after-backward trigger
  }
}

void GradReducer::on_grad_ready(int param) {
  std::lock_guard<std::mutex> lock(mutex_);
  stream_.after_gradient();  // a gradient made on another stream is waited for
  const ParamPlace& place = layout_.place(param);
  FlatUnit& unit = units_[static_cast<size_t>(place.unit)];
  if (unit.has_full_grads()) {
    // A module-level zero_grad(set_to_none) dropped the view: autograd then
    // wrote a fresh tensor, which is the whole accumulated gradient.
    const at::Tensor& p = unit.params()[static_cast<size_t>(place.slot)];
    at::Tensor slot = unit.grad_slot(place.slot);
    if (p.grad().data_ptr() != slot.data_ptr()) {
      c10::NoGradGuard no_grad;
      slot.copy_(p.grad());
      const_cast<at::Tensor&>(p).mutable_grad() = slot;
    }
  }
  emit(EngineEvent::Kind::kGradReady, place.unit, param);
  const UnitGrads s = unit_grads_[static_cast<size_t>(place.unit)];
  TORCH_CHECK(s == UnitGrads::kArriving || s == UnitGrads::kDone, "zerotrain: parameter '",
              param_names_[static_cast<size_t>(param)], "' received a gradient after its unit '", unit.name(),
              "' was already reduced in this backward pass (is it used by a second autograd pass "
              "inside one backward()?)");
  char& ready = param_ready_[static_cast<size_t>(param)];
  if (ready) return;  // accumulated twice before its unit launched: still in .grad
  ready = 1;
  if (--unit_pending_[static_cast<size_t>(place.unit)] == 0) {
    mark_done(place.unit);
    if (reducing_) launch_ready_units();
  }
}

void GradReducer::mark_done(int unit) {
  advance(unit, UnitGrads::kArriving, UnitGrads::kDone);
  done_order_.push_back(unit);
  if (unit_done_) unit_done_(unit);
}

void GradReducer::launch_ready_units() {
  // Note [Launch units in one order on every rank]
  while (next_launch_ < order_.size()) {
    const int u = order_[next_launch_];
    if (unit_grads_[static_cast<size_t>(u)] != UnitGrads::kDone) return;
    launch(u);
    ++next_launch_;
  }
}

at::Tensor GradReducer::pack(int unit, int bucket) {
  FlatUnit& U = units_[static_cast<size_t>(unit)];
  if (bucket < 0) return U.flat_grads();  // reduced where it lies
  const FlatLayout& flat = U.layout().flat;
  at::Tensor b = buckets_[static_cast<size_t>(bucket)].narrow(0, 0, flat.padded_numel());
  if (U.has_full_grads()) {
    b.copy_(U.flat_grads());
    return b;
  }
  // Note [Stage 2 never holds the full gradient]: the parameters' fresh
  // gradients, zeros in the gaps, then drop them.
  int64_t end = 0;
  for (size_t k = 0; k < U.params().size(); ++k) {
    const ParamSlot& slot = flat.slots()[k];
    if (slot.offset > end) b.narrow(0, end, slot.offset - end).zero_();
    at::Tensor dst = b.narrow(0, slot.offset, slot.numel);
    at::Tensor& p = const_cast<at::Tensor&>(U.params()[k]);
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

void GradReducer::launch(int unit) {
  RECORD_FUNCTION("zerotrain::reduce_unit", std::vector<c10::IValue>());
  const c10::OptionalStreamGuard on_stream(stream_.stream());  // Note [Reductions run on the backward's stream]
  int bucket = -1;
  if (!buckets_.empty()) {
    bucket = static_cast<int>(next_launch_ % buckets_.size());
    retire_bucket(bucket);
  }
  c10::NoGradGuard no_grad;
  at::Tensor send = pack(unit, bucket);
  if (plan_.pre_scale != 1.0) send.mul_(plan_.pre_scale);

  InFlight f{unit, CommHandle(), send, bucket};
  if (plan_.shard_owned) {
    const auto [b, e] = layout_.owned_range(unit, comm_.rank());
    f.result = send.narrow(0, b, e - b);
    // The bucket, or the unit's own gradients whose other shards nobody reads again.
    f.handle = plan_.reduce_scatter
                   ? comm_.reduce_scatter(f.result, send, ReduceOp::kSum, InputUse::kScratch)
                   : comm_.all_reduce(send, ReduceOp::kSum);
  } else {
    f.handle = comm_.all_reduce(send, ReduceOp::kSum);
  }
  advance(unit, UnitGrads::kDone, UnitGrads::kInFlight);
  in_flight_.push_back(std::move(f));
  emit(EngineEvent::Kind::kReduceLaunched, unit, -1);
  if (!plan_.overlap && !defer_retire_) retire_front();
}

void GradReducer::retire_front() {
  const c10::OptionalStreamGuard on_stream(stream_.stream());  // Note [Reductions run on the backward's stream]
  InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  f.handle.wait();
  c10::NoGradGuard no_grad;
  at::Tensor dest = owned_.owned_grads(f.unit);
  if (plan_.shard_gradients) {
    dest.add_(f.result, plan_.post_scale);  // accumulate micro-batches in the shard
  } else {
    if (dest.data_ptr() != f.result.data_ptr()) dest.copy_(f.result);
    if (plan_.post_scale != 1.0) dest.mul_(plan_.post_scale);
  }
  if (boundary_) owned_.grads_reduced(f.unit);  // Note [Offload keeps the step on the host]
  advance(f.unit, UnitGrads::kInFlight, UnitGrads::kRetired);
  emit(EngineEvent::Kind::kReduceRetired, f.unit, -1);
}

void GradReducer::retire_bucket(int bucket) {
  while (std::any_of(in_flight_.begin(), in_flight_.end(),
                     [bucket](const InFlight& f) { return f.bucket == bucket; }))
    retire_front();
}

void GradReducer::settle_order() {
  // Note [Launch units in one order on every rank]. Every rank reaches this at
  // the end of its first reducing backward, so the all-gather is matched.
  order_settled_ = true;
  if (units_.size() <= 1) return;
  bool agreed = true;
  if (comm_.world_size() > 1) {  // whatever this rank saw: the others may have seen otherwise
    const int64_t mine = static_cast<int64_t>(order_hash(done_order_));
    const std::vector<int64_t> all =
        comm_detail::all_gather_values(comm_, units_.front().flat_params().device(), std::vector<int64_t>{mine});
    agreed = std::all_of(all.begin(), all.end(), [&](int64_t h) { return h == all.front(); });
  }
  if (agreed) {
    order_ = done_order_;
  } else if (comm_.rank() == 0) {
    std::cerr << "zerotrain: the ranks finished the units' backward in different orders; gradients are "
                 "reduced in reverse registration order, which may keep finished units' gradients "
                 "alive longer\n";
  }
}

void GradReducer::no_gradient(const std::vector<int>& units) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int u : units)
    if (unit_grads_[static_cast<size_t>(u)] == UnitGrads::kArriving) mark_done(u);
}

void GradReducer::end_backward(const std::function<void()>& before_retire) {
  std::unique_lock<std::mutex> lock(mutex_);
  emit(EngineEvent::Kind::kBackwardDone, -1, -1);
  // Units with parameters that got no gradient are done now, in launch order.
  for (int u : order_)
    if (unit_grads_[static_cast<size_t>(u)] == UnitGrads::kArriving) mark_done(u);
  if (reducing_) {
    // Launched without waiting for themselves: a rank still in its backward
    // may need this rank in before_retire (stage 3's end of pass) first.
    defer_retire_ = true;
    launch_ready_units();
    defer_retire_ = false;
  }
  if (before_retire) {
    lock.unlock();
    before_retire();
    lock.lock();
  }
  if (reducing_) {
    std::vector<std::string> unused;
    for (size_t p = 0; p < param_ready_.size(); ++p)
      if (!param_ready_[p]) unused.push_back(param_names_[p]);
    while (!in_flight_.empty()) retire_front();
    stream_.join_caller();  // step() reads the reduced gradients on the caller's stream
    for (size_t u = 0; u < units_.size(); ++u)
      TORCH_INTERNAL_ASSERT(unit_grads_[u] == UnitGrads::kRetired, "unit '", units_[u].name(),
                            "' not reduced at the end of backward: ", to_string(unit_grads_[u]));
    if (!unused.empty() && !plan_.ignore_unused_parameters) {
      std::ostringstream s;
      for (size_t i = 0; i < unused.size(); ++i) s << (i ? ", " : "") << "'" << unused[i] << "'";
      TORCH_CHECK(false, "zerotrain: these parameters received no gradient in this backward: ", s.str(),
                  " (zero_optimization.ignore_unused_parameters is false)");
    }
    if (!order_settled_) settle_order();
  }
  state_ = (reducing_ && boundary_) ? GradState::kReduced : GradState::kAccumulating;
}

}  // namespace zerotrain::zero
