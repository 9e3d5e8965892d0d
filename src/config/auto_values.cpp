#include "config/auto_values.h"

#include <cmath>
#include <functional>

namespace zerotrain::config_detail {
namespace {

using nlohmann::json;
using Resolver = std::function<std::optional<json>(const ResolveOptions&)>;

struct AutoRule {
  std::string_view path;
  Resolver resolve;
};

template <typename T>
std::optional<json> maybe(const std::optional<T>& v) {
  if (!v) return std::nullopt;
  return json(*v);
}

const std::vector<AutoRule>& rules() {
  static const std::vector<AutoRule> table = {
      {"train_micro_batch_size_per_gpu", [](const ResolveOptions& o) { return maybe(o.auto_values.micro_batch_per_gpu); }},
      {"gradient_accumulation_steps", [](const ResolveOptions& o) { return maybe(o.auto_values.gradient_accumulation_steps); }},
      {"train_batch_size",
       [](const ResolveOptions& o) -> std::optional<json> {
         const auto& a = o.auto_values;
         if (!a.micro_batch_per_gpu || !a.gradient_accumulation_steps) return std::nullopt;
         return json(o.world_size * *a.micro_batch_per_gpu * *a.gradient_accumulation_steps);
       }},
      {"gradient_clipping", [](const ResolveOptions& o) { return maybe(o.auto_values.gradient_clipping); }},
      {"optimizer.params.lr", [](const ResolveOptions& o) { return maybe(o.auto_values.lr); }},
      {"optimizer.params.betas",
       [](const ResolveOptions& o) -> std::optional<json> {
         if (!o.auto_values.betas) return std::nullopt;
         return json::array({(*o.auto_values.betas)[0], (*o.auto_values.betas)[1]});
       }},
      {"optimizer.params.eps", [](const ResolveOptions& o) { return maybe(o.auto_values.eps); }},
      {"optimizer.params.weight_decay", [](const ResolveOptions& o) { return maybe(o.auto_values.weight_decay); }},
      // The Trainer fills warmup_min_lr with 0 unconditionally.
      {"scheduler.params.warmup_min_lr", [](const ResolveOptions&) -> std::optional<json> { return json(0.0); }},
      {"scheduler.params.warmup_max_lr", [](const ResolveOptions& o) { return maybe(o.auto_values.lr); }},
      {"scheduler.params.warmup_num_steps", [](const ResolveOptions& o) { return maybe(o.auto_values.warmup_steps); }},
      {"scheduler.params.total_num_steps", [](const ResolveOptions& o) { return maybe(o.auto_values.total_steps); }},
      {"fp16.enabled", [](const ResolveOptions& o) { return maybe(o.auto_values.fp16); }},
      {"bf16.enabled", [](const ResolveOptions& o) { return maybe(o.auto_values.bf16); }},
      {"zero_optimization.reduce_bucket_size",
       [](const ResolveOptions& o) -> std::optional<json> {
         if (!o.auto_values.hidden_size) return std::nullopt;
         const int64_t h = *o.auto_values.hidden_size;
         return json(h * h);
       }},
      {"zero_optimization.stage3_prefetch_bucket_size",
       [](const ResolveOptions& o) -> std::optional<json> {
         if (!o.auto_values.hidden_size) return std::nullopt;
         const double h = static_cast<double>(*o.auto_values.hidden_size);
         return json(static_cast<int64_t>(std::llround(0.9 * h * h)));
       }},
      {"zero_optimization.stage3_param_persistence_threshold",
       [](const ResolveOptions& o) -> std::optional<json> {
         if (!o.auto_values.hidden_size) return std::nullopt;
         return json(10 * *o.auto_values.hidden_size);
       }},
  };
  return table;
}

}  // namespace

std::string_view canonical_auto_path(std::string_view path) {
  if (path == "zero_optimization.prefetch_bucket_size") return "zero_optimization.stage3_prefetch_bucket_size";
  if (path == "zero_optimization.param_persistence_threshold") {
    return "zero_optimization.stage3_param_persistence_threshold";
  }
  if (path == "bfloat16.enabled") return "bf16.enabled";
  return path;
}

AutoLookup lookup_auto(const ResolveOptions& options, std::string_view path) {
  const std::string_view key = canonical_auto_path(path);
  for (const AutoRule& rule : rules()) {
    if (rule.path == key) return {true, rule.resolve(options)};
  }
  return {false, std::nullopt};
}

std::vector<std::string_view> auto_paths() {
  std::vector<std::string_view> out;
  for (const AutoRule& rule : rules()) out.push_back(rule.path);
  return out;
}

}  // namespace zerotrain::config_detail
