// Engine::full_fp32_param and full_optimizer_state: one parameter's full
// fp32 state, gathered from the ranks that own its pieces (DeepSpeed's
// safe_get_full_fp32_param / safe_get_full_optimizer_state).

#include <zerotrain/engine.h>

#include "engine/engine_impl.h"

#include <ATen/ops/empty.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace zerotrain {

namespace {

enum class FullState { kMaster, kExpAvg, kExpAvgSq };

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
  }
  c10::NoGradGuard no_grad;
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

}  // namespace zerotrain
