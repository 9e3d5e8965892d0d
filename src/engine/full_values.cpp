// Full values on demand: Engine::full_fp32_param, full_grad and
// full_optimizer_state (one parameter's fp32 state, gathered from the ranks
// that own its pieces, as DeepSpeed's safe_get_full_fp32_param /
// safe_get_full_grad / safe_get_full_optimizer_state),
// and Engine::gathered_parameters (DeepSpeed's zero.GatheredParameters).

#include <zerotrain/engine.h>

#include "engine/engine_impl.h"

#include <ATen/ops/empty.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <iostream>

namespace zerotrain {

namespace {

enum class FullState { kMaster, kExpAvg, kExpAvgSq, kGrad };

at::Tensor full_state(detail::EngineImpl& s, const std::string& name, FullState which) {
  const zero::ShardedModel& core = *s.core;
  const auto& names = core.param_names();
  const auto it = std::find(names.begin(), names.end(), name);
  TORCH_CHECK(it != names.end(), "zerotrain: the model trains no parameter named '", name, "'");
  const int param = static_cast<int>(it - names.begin());
  const zero::ParamPlace& place = core.layout().place(param);
  const zero::OwnedState& owned = core.owned();
  at::Tensor part;
  switch (which) {
    case FullState::kMaster: part = owned.master(place.unit); break;
    case FullState::kExpAvg: part = owned.moments(place.unit).exp_avg; break;
    case FullState::kExpAvgSq: part = owned.moments(place.unit).exp_avg_sq; break;
    case FullState::kGrad: part = owned.owned_grads(place.unit).to(at::kFloat); break;
  }
  c10::NoGradGuard no_grad;
  part = part.to(core.device());  // offloaded state: the collective runs on the model's device
  at::Tensor whole = part;
  if (core.layout().sharded()) {
    whole = at::empty({part.numel() * core.layout().world_size()}, part.options());
    s.channels.gather->all_gather(whole, part.contiguous()).wait();
  }
  const at::Tensor& p = core.param(param);
  return whole.narrow(0, core.layout().param_offset(param), p.numel()).view(p.sizes()).cpu().clone();
}

}  // namespace

at::Tensor Engine::full_fp32_param(const std::string& name) { return full_state(*state_, name, FullState::kMaster); }

at::Tensor Engine::full_optimizer_state(const std::string& name, const std::string& state) {
  TORCH_CHECK(state == "exp_avg" || state == "exp_avg_sq", "zerotrain: full_optimizer_state() takes \"exp_avg\" or "
              "\"exp_avg_sq\", not \"", state, "\"");
  return full_state(*state_, name, state == "exp_avg" ? FullState::kExpAvg : FullState::kExpAvgSq);
}

at::Tensor Engine::full_grad(const std::string& name) {
  detail::EngineImpl& s = *state_;
  TORCH_CHECK(s.core->grad_state() == zero::GradState::kReduced,
              "zerotrain: full_grad() reads the gradients of an accumulation boundary: call it after the backward "
              "of the boundary's last micro-batch and before step(); the gradients are ",
              zero::to_string(s.core->grad_state()));
  // The owned gradients are averaged over the ranks and still carry the loss scale.
  return full_state(s, name, FullState::kGrad).div_(s.progress.scaler.scale());
}

GatheredParameters Engine::gathered_parameters(const std::vector<std::string>& names,
                                               std::optional<int> modifier_rank) {
  detail::EngineImpl& s = *state_;
  zero::ShardedModel& core = *s.core;
  TORCH_CHECK(!modifier_rank || (*modifier_rank >= 0 && *modifier_rank < s.channels.reduce->world_size()),
              "zerotrain: gathered_parameters: modifier rank ", modifier_rank.value_or(-1), " is outside [0, ",
              s.channels.reduce->world_size(), ")");
  TORCH_CHECK(core.grad_state() == zero::GradState::kClean && s.progress.between_steps(),
              "zerotrain: gathered_parameters() inside an accumulation window; call it between steps");
  std::vector<int> units;
  if (names.empty()) {
    for (size_t u = 0; u < core.units().size(); ++u) units.push_back(static_cast<int>(u));
  } else {
    const auto& all = core.param_names();
    for (const std::string& name : names) {
      const auto it = std::find(all.begin(), all.end(), name);
      TORCH_CHECK(it != all.end(), "zerotrain: gathered_parameters: the model trains no parameter named '", name, "'");
      units.push_back(core.layout().place(static_cast<int>(it - all.begin())).unit);
    }
    std::sort(units.begin(), units.end());
    units.erase(std::unique(units.begin(), units.end()), units.end());
  }
  core.gather(units);  // every rank, the same list: held gathered at stage 3, a no-op below
  return GatheredParameters(state_.get(), std::move(units), modifier_rank);
}

GatheredParameters::GatheredParameters(detail::EngineImpl* state, std::vector<int> units,
                                       std::optional<int> modifier_rank)
    : state_(state), units_(std::move(units)), modifier_rank_(modifier_rank) {}

GatheredParameters::GatheredParameters(GatheredParameters&& o) noexcept
    : state_(o.state_), units_(std::move(o.units_)), modifier_rank_(o.modifier_rank_) {
  o.state_ = nullptr;
}

void GatheredParameters::close() {
  if (state_ == nullptr) return;
  detail::EngineImpl* s = state_;
  state_ = nullptr;
  if (modifier_rank_) s->core->adopt_full_values(units_, *modifier_rank_);
  s->core->release(units_);
}

GatheredParameters::~GatheredParameters() {
  try {
    close();
  } catch (const std::exception& e) {
    std::cerr << "zerotrain: ending gathered_parameters() failed: " << e.what() << "\n";
  }
}

}  // namespace zerotrain
