// See Notes [Every gather is agreed in a request round], [Persistent units]
// and [A unit is released only once its triggers are seen] in gather_scheduler.h.

#include "zero/gather_scheduler.h"

#include "comm/gather_values.h"

#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <iostream>
#include <sstream>

namespace zerotrain::zero {

namespace {
constexpr int kMaxPrefetchUnits = 8;
}

GatherScheduler::GatherScheduler(std::vector<FlatUnit>& units, OwnedState& owned, Communicator& comm,
                                 GatherPlan plan, const std::vector<bool>& has_triggers, Events events)
    : units_(units), owned_(owned), comm_(comm), plan_(plan), events_(std::move(events)) {
  TORCH_INTERNAL_ASSERT(has_triggers.size() == units_.size());
  persistent_.assign(units_.size(), 0);
  observed_.assign(units_.size(), 0);
  keep_.assign(units_.size(), 0);
  holds_.assign(units_.size(), 0);
  in_flight_of_.assign(units_.size(), -1);
  int64_t persisted = 0;
  for (size_t u = 0; u < units_.size(); ++u) {
    const int64_t numel = units_[u].layout().flat.param_numel();
    const bool small = numel <= plan_.persistence_threshold &&
                       persisted + numel <= plan_.model_persistence_threshold;
    if (!has_triggers[u] || small) {
      persistent_[u] = 1;
      if (has_triggers[u]) persisted += numel;
    }
  }
  slots_ = 1 + std::min<int>(kMaxPrefetchUnits, static_cast<int>(units_.size()));
  // Units released already were sharded at creation: their triggers are
  // trusted from the start; the persistent ones among them are gathered now.
  std::vector<int> persistent_released;
  for (size_t u = 0; u < units_.size(); ++u) {
    if (units_[u].param_state() != ParamState::kSharded) {
      live_numel_ += units_[u].layout().flat.padded_numel();
      continue;
    }
    observed_[u] = 1;
    if (persistent_[u]) persistent_released.push_back(static_cast<int>(u));
  }
  gather_now(persistent_released);
  peak_live_numel_ = std::max(peak_live_numel_, live_numel());
}

void GatherScheduler::set_order(Pass pass, std::vector<int> order) {
  order_[pass] = std::move(order);
  position_[pass] = 0;
}

std::vector<int64_t> GatherScheduler::request_for(int u, Pass pass) {
  std::vector<int64_t> req(static_cast<size_t>(slots_), -1);
  const auto present = [&](int v) {
    return units_[static_cast<size_t>(v)].param_state() != ParamState::kSharded ||
           in_flight_of_[static_cast<size_t>(v)] >= 0;
  };
  if (!present(u)) req[0] = u;
  auto it = order_.find(pass);
  if (diverged_ || it == order_.end()) return req;
  const std::vector<int>& order = it->second;
  const size_t pos = position_[pass];
  if (pos == SIZE_MAX) return req;  // off the recorded order: no prefetch
  // Note [Prefetch is a sliding window]: the units after `u` in the order that
  // are already gathered or in flight count against the bucket.
  // What is gathered, with `u` when it is about to be.
  int64_t window = 0, live = live_numel() + (req[0] >= 0 ? units_[static_cast<size_t>(u)].layout().flat.padded_numel() : 0);
  size_t slot = 1;
  for (size_t k = pos; k < order.size() && slot < req.size(); ++k) {
    const int v = order[k];
    if (v == u || persistent(v)) continue;
    const int64_t numel = units_[static_cast<size_t>(v)].layout().flat.padded_numel();
    if (window + numel > plan_.prefetch_bucket_numel) break;
    window += numel;
    if (present(v)) continue;
    if (live + numel > plan_.max_live_numel) break;
    live += numel;
    req[slot++] = v;
  }
  return req;
}

void GatherScheduler::need(int u, Pass pass) {
  RECORD_FUNCTION("zerotrain::fetch_unit", std::vector<c10::IValue>());
  observed_[static_cast<size_t>(u)] = observed_[static_cast<size_t>(u)] || pass == Pass::kForward;
  // Where this rank is in the recorded order of the pass.
  if (auto it = order_.find(pass); it != order_.end() && !it->second.empty()) {
    size_t& pos = position_[pass];
    const std::vector<int>& order = it->second;
    if (pos != SIZE_MAX && pos < order.size() && order[pos] == u) {
      ++pos;
    } else if (order.front() == u) {
      pos = 1;  // a new pass along the order
    } else {
      pos = SIZE_MAX;
    }
  }
  // A round when this rank needs `u` or has room to prefetch: in the recorded
  // order every rank is in the same state here, so all of them join it.
  const std::vector<int64_t> req = request_for(u, pass);
  if (std::any_of(req.begin(), req.end(), [](int64_t v) { return v >= 0; })) round(req);
  if (units_[static_cast<size_t>(u)].param_state() != ParamState::kGathered) wait(u);
}

void GatherScheduler::round(const std::vector<int64_t>& request) {
  RECORD_FUNCTION("zerotrain::request_round", std::vector<c10::IValue>());
  const std::vector<int64_t> all = comm_detail::all_gather_values(comm_, device(), request);
  const size_t n = request.size();
  std::vector<int> wanted;
  bool same = true;
  for (size_t r = 0; r < all.size() / n; ++r)
    for (size_t k = 0; k < n; ++k) {
      const int64_t v = all[r * n + k];
      same = same && v == all[k];
      if (v >= 0) wanted.push_back(static_cast<int>(v));
    }
  if (!same) {
    diverged_ = true;
    ++diverged_rounds_;
    if (!warned_ && comm_.rank() == 0) {
      std::ostringstream s;
      for (size_t r = 0; r < all.size() / n; ++r) {
        const int64_t v = all[r * n];
        s << (r ? ", " : "") << "rank " << r << ": "
          << (v >= 0 ? "unit '" + units_[static_cast<size_t>(v)].name() + "'" : std::string("no unit"));
      }
      std::cerr << "zerotrain: stage 3: the ranks did not ask for the same units (" << s.str()
                << "); their control flow differs, or differs from the order recorded at the first step. Units "
                   "are gathered on demand, without prefetch or release, until this pass ends; this warning is "
                   "printed once\n";
    }
    warned_ = true;
  }
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  issue(wanted);
}

void GatherScheduler::issue(const std::vector<int>& sorted_units) {
  // One all-gather per unit, straight into its flat buffer (Note [Gather
  // each unit into its own buffer]).
  for (int u : sorted_units) {
    if (in_flight_of_[static_cast<size_t>(u)] >= 0) wait(u);  // every rank issues the union, whatever it holds
    FlatUnit& U = units_[static_cast<size_t>(u)];
    if (U.param_state() == ParamState::kSharded) live_numel_ += U.layout().flat.padded_numel();
    U.begin_gather();
    InFlight flight;
    flight.units = {u};
    flight.handle = comm_.all_gather(U.flat_params(), owned_.gather_input(u));
    const int64_t key = next_flight_++;
    in_flight_of_[static_cast<size_t>(u)] = key;
    if (events_) events_(EngineEvent::Kind::kGatherLaunched, u);
    flights_.emplace(key, std::move(flight));
  }
  if (!sorted_units.empty()) peak_live_numel_ = std::max(peak_live_numel_, live_numel());
}

void GatherScheduler::wait(int u) {
  const int64_t key = in_flight_of_[static_cast<size_t>(u)];
  TORCH_INTERNAL_ASSERT(key >= 0, "unit '", units_[static_cast<size_t>(u)].name(), "' has no gather in flight");
  auto it = flights_.find(key);
  it->second.handle.wait();
  for (int v : it->second.units) {
    units_[static_cast<size_t>(v)].end_gather();
    in_flight_of_[static_cast<size_t>(v)] = -1;
    if (events_) events_(EngineEvent::Kind::kGatherDone, v);
  }
  flights_.erase(it);
}

void GatherScheduler::wait_all() {
  while (!flights_.empty()) wait(flights_.begin()->second.units.front());
}

void GatherScheduler::release(int u) {
  FlatUnit& U = units_[static_cast<size_t>(u)];
  if (U.param_state() != ParamState::kGathered || persistent(u) || !observed_[static_cast<size_t>(u)] ||
      holds_[static_cast<size_t>(u)] > 0)
    return;
  free_unit(u);
}

void GatherScheduler::free_unit(int u) {
  FlatUnit& U = units_[static_cast<size_t>(u)];
  U.release();
  live_numel_ -= U.layout().flat.padded_numel();
  if (events_) events_(EngineEvent::Kind::kReleased, u);
}

bool GatherScheduler::reused_soon(int u) const {
  // The elements between here and u's turn in the recorded backward order.
  auto fwd = order_.find(Pass::kForward);
  auto bwd = order_.find(Pass::kBackward);
  if (fwd == order_.end() || bwd == order_.end()) return false;
  const auto fpos = position_.find(Pass::kForward);
  if (fpos == position_.end() || fpos->second == SIZE_MAX) return false;
  int64_t distance = 0;
  for (size_t k = fpos->second; k < fwd->second.size(); ++k)
    distance += units_[static_cast<size_t>(fwd->second[k])].layout().flat.param_numel();
  for (int v : bwd->second) {
    if (v == u) return distance <= plan_.max_reuse_distance;
    distance += units_[static_cast<size_t>(v)].layout().flat.param_numel();
  }
  return false;
}

void GatherScheduler::done_with(int u, Pass pass) {
  if (diverged_ || persistent(u)) return;
  // Kept for reuse only when a backward follows (not in evaluation).
  if (pass == Pass::kForward && at::GradMode::is_enabled() && reused_soon(u) &&
      live_numel() <= plan_.max_live_numel) {
    keep_[static_cast<size_t>(u)] = 1;
    return;
  }
  release(u);
}

void GatherScheduler::end_pass() {
  // Note [Every gather is agreed in a request round]: join the others' rounds
  // until no rank asks for anything.
  const std::vector<int64_t> nothing(static_cast<size_t>(slots_), -1);
  for (;;) {
    const std::vector<int64_t> all = comm_detail::all_gather_values(comm_, device(), nothing);
    std::vector<int> wanted;
    for (int64_t v : all)
      if (v >= 0) wanted.push_back(static_cast<int>(v));
    if (wanted.empty()) break;
    if (std::any_of(all.begin(), all.end(), [&](int64_t v) { return v != all.front(); })) diverged_ = true;
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
    issue(wanted);
  }
  wait_all();
  for (size_t u = 0; u < units_.size(); ++u) {
    if (!diverged_ && keep_[u]) continue;  // reused in the next pass (the same decision on every rank)
    release(static_cast<int>(u));
  }
  std::fill(keep_.begin(), keep_.end(), 0);
  diverged_ = false;
  for (auto& [pass, pos] : position_) pos = 0;
}

void GatherScheduler::gather_now(const std::vector<int>& units) {
  std::vector<int> sorted = units;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  issue(sorted);
  wait_all();
}

void GatherScheduler::gather_and_hold(const std::vector<int>& units) {
  gather_now(units);
  for (int u : units) ++holds_.at(static_cast<size_t>(u));
}

void GatherScheduler::release_held(const std::vector<int>& units) {
  wait_all();
  for (int u : units) {
    int& holds = holds_.at(static_cast<size_t>(u));
    TORCH_INTERNAL_ASSERT(holds > 0, "unit '", units_[static_cast<size_t>(u)].name(), "' released more often than held");
    if (--holds > 0) continue;
    FlatUnit& U = units_[static_cast<size_t>(u)];
    if (persistent(u) || U.param_state() != ParamState::kGathered) continue;
    free_unit(u);
  }
}

void GatherScheduler::refresh() {
  wait_all();
  // Which units any rank holds: a bitmap, OR-ed across ranks.
  const size_t words = (units_.size() + 62) / 63;
  std::vector<int64_t> mine(words, 0);
  for (size_t u = 0; u < units_.size(); ++u)
    if (units_[u].param_state() == ParamState::kGathered) mine[u / 63] |= int64_t{1} << (u % 63);
  const std::vector<int64_t> all = comm_detail::all_gather_values(comm_, device(), mine);
  std::vector<int> held;
  for (size_t u = 0; u < units_.size(); ++u) {
    bool any = false;
    for (size_t r = 0; r < all.size() / words; ++r) any = any || ((all[r * words + u / 63] >> (u % 63)) & 1);
    if (any) held.push_back(static_cast<int>(u));
  }
  gather_now(held);
}

}  // namespace zerotrain::zero
