#include "zerotrain/estimate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace zerotrain {

ModelStateBytes estimate_model_states(const EstimateOptions& o, int stage) {
  if (o.parameters < 1) throw std::invalid_argument("the parameter count must be at least 1");
  if (o.world_size < 1) throw std::invalid_argument("the world size must be at least 1");
  if (stage < 0 || stage > 3) {
    throw std::invalid_argument("the ZeRO stage must be 0, 1, 2 or 3, got " + std::to_string(stage));
  }
  if (o.offload_optimizer && stage == 0) {
    throw std::invalid_argument("optimizer offload needs ZeRO stage 1, 2 or 3");
  }
  if (o.offload_param && (stage != 3 || !o.offload_optimizer)) {
    throw std::invalid_argument("parameter offload needs ZeRO stage 3 and optimizer offload");
  }
  if (o.largest_unit < 0 || o.prefetch_bucket < 0 || o.persistent < 0 || o.reuse_distance < 0 || o.max_live < 0) {
    throw std::invalid_argument(
        "the largest unit, prefetch bucket, persistent, reuse distance and max-live counts must be >= 0");
  }
  const bool mixed = o.dtype != DType::kFloat32;
  const int64_t param_bytes = mixed ? 2 : 4;
  const int64_t grad_bytes = mixed ? 2 : 4;
  const ShardingPolicy sharding = ShardingPolicy::for_stage(stage);
  // Adam: the two fp32 moments, plus an fp32 master copy of what this rank
  // updates. An fp32 model at stage 0 updates its parameters in place; at
  // stages 1-3 the engine (as DeepSpeed's ZeRO optimizers) keeps the master
  // shard apart from the flat parameters, so fp32 pays it too.
  const int64_t optimizer_bytes = mixed || sharding.optimizer_states ? 12 : 8;

  const int64_t full = o.parameters;
  const int64_t shard = (o.parameters + o.world_size - 1) / o.world_size;

  ModelStateBytes b;
  b.stage = stage;
  b.parameters = param_bytes * (sharding.parameters ? shard : full);
  b.gradients = grad_bytes * (sharding.gradients ? shard : full);
  const int64_t states = optimizer_bytes * (sharding.optimizer_states ? shard : full);
  (o.offload_optimizer ? b.host_optimizer_states : b.optimizer_states) = states;
  if (o.offload_param) {
    b.host_parameters = b.parameters;
    b.parameters = 0;
  }
  // Offload's host buffers (Note [Offload keeps the step on the host]): an fp32
  // gradient copy, and a staging copy of the owned parameters unless they live there.
  if (o.offload_optimizer) b.host_buffers = 4 * shard + (o.offload_param ? 0 : param_bytes * shard);
  if (sharding.parameters) {
    const int64_t reuse = std::min(o.reuse_distance, full);  // a sum of element counts must not overflow
    const int64_t window =
        std::min(o.max_live, o.persistent + o.largest_unit + std::min(o.prefetch_bucket, full) + reuse);
    b.gathered_parameters = param_bytes * std::min(window, full);
  }
  return b;
}

std::string format_bytes(int64_t bytes) {
  static const char* units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (unit + 1 < sizeof(units) / sizeof(units[0]) && std::round(value * 10.0) / 10.0 >= 1000.0) {
    value /= 1000.0;
    ++unit;
  }
  if (unit == 0) return std::to_string(bytes) + " B";
  const double rounded = std::round(value * 10.0) / 10.0;  // half away from zero
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", rounded, units[unit]);
  return buf;
}

}  // namespace zerotrain
