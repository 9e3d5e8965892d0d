// zerotrain::Config: parsing entry points, cross-section consistency, accessors.

#include "zerotrain/config.h"

#include <fstream>
#include <sstream>

#include "config/json_text.h"
#include "config/sections.h"
#include "config/state.h"

namespace zerotrain {

using config_detail::json;

namespace {

std::string format_problems(const std::string& source, const std::vector<ConfigProblem>& problems) {
  std::string out;
  for (const ConfigProblem& p : problems) {
    if (!out.empty()) out += '\n';
    out += source + ": " + (p.path.empty() ? "" : p.path + ": ") + p.message;
  }
  return out;
}

std::shared_ptr<const Config::State> build(json document, const ResolveOptions& options, std::string source) {
  config_detail::ParseContext ctx(options);
  auto state = std::make_shared<Config::State>();
  state->source = std::move(source);
  state->options = options;
  if (options.world_size < 1) {
    ctx.error("", "the data-parallel world size must be at least 1, got " + std::to_string(options.world_size));
  }
  if (!document.is_object()) {
    ctx.error("", "a config must be a JSON object, got " + config_detail::describe(document));
    throw ConfigError(state->source, ctx.errors());
  }
  {
    config_detail::ObjectReader root(ctx, "", &document);
    config_detail::Sections& s = state->sections;
    parse_batch(root, s);
    parse_optimizer(root, s);
    parse_scheduler(root, s);
    parse_precision(root, s);
    parse_gradients(root, s);
    parse_zero(root, s);
    parse_misc(root, s);
    parse_unsupported(root);
    check_consistency(s, ctx);
  }  // readers register their keys on destruction
  ctx.report_unknown_keys();
  if (ctx.has_errors()) throw ConfigError(state->source, ctx.errors());
  state->unresolved_auto = ctx.unresolved();
  state->warnings = ctx.warnings();
  state->document = std::move(document);
  return state;
}

}  // namespace

ConfigError::ConfigError(std::string source, std::vector<ConfigProblem> problems)
    : std::invalid_argument(format_problems(source, problems)),
      source_(std::move(source)),
      problems_(std::move(problems)) {}

const char* to_string(DType dtype) noexcept {
  switch (dtype) {
    case DType::kFloat32: return "fp32";
    case DType::kFloat16: return "fp16";
    case DType::kBFloat16: return "bf16";
  }
  return "?";
}

const char* to_string(OptimizerKind kind) noexcept {
  switch (kind) {
    case OptimizerKind::kAdam: return "Adam";
    case OptimizerKind::kAdamW: return "AdamW";
    case OptimizerKind::kLamb: return "Lamb";
  }
  return "?";
}

const char* to_string(OffloadDevice device) noexcept {
  switch (device) {
    case OffloadDevice::kNone: return "none";
    case OffloadDevice::kCpu: return "cpu";
    case OffloadDevice::kNvme: return "nvme";
  }
  return "?";
}

const char* scheduler_type_name(const SchedulerParams& params) noexcept {
  struct Name {
    const char* operator()(const WarmupLRParams&) const { return "WarmupLR"; }
    const char* operator()(const WarmupDecayLRParams&) const { return "WarmupDecayLR"; }
    const char* operator()(const WarmupCosineLRParams&) const { return "WarmupCosineLR"; }
    const char* operator()(const OneCycleParams&) const { return "OneCycle"; }
    const char* operator()(const LRRangeTestParams&) const { return "LRRangeTest"; }
  };
  return std::visit(Name{}, params);
}

ShardingPolicy ShardingPolicy::for_stage(int stage) noexcept {
  return ShardingPolicy{stage >= 1, stage >= 2, stage >= 3};
}

namespace config_detail {

// Settings that are each valid but contradict one another.
void check_consistency(const Sections& s, ParseContext& ctx) {
  if (s.fp16.enabled && s.bf16.enabled) {
    ctx.error(s.bf16_key + ".enabled", "fp16 and bf16 cannot both be enabled");
  }
  if (s.optimizer && s.optimizer->kind == OptimizerKind::kLamb && s.fp16.enabled && !s.fp16.dynamic_loss_scale()) {
    ctx.error("fp16.loss_scale", "Lamb requires dynamic loss scaling (loss_scale 0), as in DeepSpeed; got a static "
                                 "scale of " + format_number(s.fp16.loss_scale));
  }
  const ZeroConfig& z = s.zero;
  if (z.offload_param.enabled() && z.stage < 3) {
    ctx.error("zero_optimization.offload_param", "parameter offload needs ZeRO stage 3, but stage is " +
                                                     std::to_string(z.stage));
  }
  if (z.offload_optimizer.enabled() && z.stage < 1) {
    ctx.error("zero_optimization.offload_optimizer", "optimizer offload needs ZeRO stage 1, 2 or 3, but stage is 0");
  }
  if (z.offload_optimizer.ratio < 1.0 && z.stage != 3) {
    ctx.error("zero_optimization.offload_optimizer.ratio", "a partial offload ratio needs ZeRO stage 3 (DeepSpeed), "
                                                           "but stage is " + std::to_string(z.stage));
  }
  if (s.gradients.prescale && s.gradients.predivide_factor != 1.0) {
    ctx.error("gradient_predivide_factor", "prescale_gradients divides by the world size before the reduction, so "
                                           "gradient_predivide_factor would be ignored; set only one");
  }
  if (z.stage >= 1 && z.reduce_scatter) {
    // DeepSpeed asserts both in its ZeRO optimizers.
    if (s.gradients.predivide_factor != 1.0) {
      ctx.error("gradient_predivide_factor", "must be 1.0 with ZeRO stage " + std::to_string(z.stage) +
                                                 " and reduce_scatter (as in DeepSpeed), got " +
                                                 format_number(s.gradients.predivide_factor));
    }
    if (s.gradients.prescale) {
      ctx.error("prescale_gradients", "not supported with ZeRO stage " + std::to_string(z.stage) +
                                          " and reduce_scatter (as in DeepSpeed)");
    }
  }
  if (s.optimizer && s.optimizer->torch_adam && z.offload_optimizer.enabled() && s.zero_force_ds_cpu_optimizer) {
    ctx.error("optimizer.params.torch_adam", "an offloaded optimizer runs zerotrain's CPU Adam; torch_adam "
                                             "contradicts it (set zero_force_ds_cpu_optimizer false to allow)");
  }
}

}  // namespace config_detail

// ---------------------------------------------------------------------------

Config::Config(std::shared_ptr<const State> state) : state_(std::move(state)) {}

Config Config::from_json(const nlohmann::json& json, const ResolveOptions& options) {
  return Config(build(json, options, "<json>"));
}

Config Config::from_string(std::string_view text, const ResolveOptions& options, std::string source) {
  std::vector<ConfigProblem> problems;
  json document = config_detail::parse_config_text(text, problems);
  if (!problems.empty()) throw ConfigError(source, problems);
  return Config(build(std::move(document), options, std::move(source)));
}

Config Config::from_file(const std::string& path, const ResolveOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, {{"", "cannot open the file for reading"}});
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw ConfigError(path, {{"", "error while reading the file"}});
  return from_string(buffer.str(), options, path);
}

Config Config::resolved(const ResolveOptions& options) const {
  return Config(build(state_->document, options, state_->source));
}

void Config::require_resolved() const {
  if (state_->unresolved_auto.empty()) return;
  std::vector<ConfigProblem> problems;
  for (const std::string& path : state_->unresolved_auto) {
    problems.push_back({path, "\"auto\" was not resolved: pass its value in ResolveOptions::auto_values"});
  }
  throw ConfigError(state_->source, problems);
}

const std::vector<std::string>& Config::unresolved_auto() const noexcept { return state_->unresolved_auto; }
const std::vector<ConfigProblem>& Config::warnings() const noexcept { return state_->warnings; }
const std::string& Config::source() const noexcept { return state_->source; }
const ResolveOptions& Config::resolve_options() const noexcept { return state_->options; }

const BatchConfig& Config::batch() const {
  if (!state_->sections.batch_resolved) {
    std::vector<ConfigProblem> problems;
    for (const std::string& path : state_->unresolved_auto) {
      if (path == "train_batch_size" || path == "train_micro_batch_size_per_gpu" ||
          path == "gradient_accumulation_steps") {
        problems.push_back({path, "\"auto\" was not resolved, so the batch size is unknown"});
      }
    }
    throw ConfigError(state_->source, problems);
  }
  return state_->sections.batch;
}

const std::optional<OptimizerConfig>& Config::optimizer() const noexcept { return state_->sections.optimizer; }
const std::optional<SchedulerParams>& Config::scheduler() const noexcept { return state_->sections.scheduler; }
const Fp16Config& Config::fp16() const noexcept { return state_->sections.fp16; }
const Bf16Config& Config::bf16() const noexcept { return state_->sections.bf16; }
DType Config::model_dtype() const noexcept { return state_->sections.model_dtype(); }
const GradientConfig& Config::gradients() const noexcept { return state_->sections.gradients; }
const ZeroConfig& Config::zero() const noexcept { return state_->sections.zero; }
const ActivationCheckpointingConfig& Config::activation_checkpointing() const noexcept {
  return state_->sections.activation_checkpointing;
}
const LoggingConfig& Config::logging() const noexcept { return state_->sections.logging; }
const CheckpointConfig& Config::checkpoint() const noexcept { return state_->sections.checkpoint; }
const CommConfig& Config::comm() const noexcept { return state_->sections.comm; }
bool Config::zero_allow_untested_optimizer() const noexcept { return state_->sections.zero_allow_untested_optimizer; }
bool Config::zero_force_ds_cpu_optimizer() const noexcept { return state_->sections.zero_force_ds_cpu_optimizer; }

nlohmann::json Config::to_json() const {
  return config_detail::sections_to_json(state_->sections, state_->unresolved_auto);
}

std::string Config::to_json_string(int indent) const { return to_json().dump(indent); }

}  // namespace zerotrain
