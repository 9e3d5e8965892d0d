// The resolved config as DeepSpeed-style JSON. Parsing the output again gives
// the same config (tested), so it is a complete, explicit record of a run's settings.

#include <algorithm>
#include <string>

#include "config/auto_values.h"
#include "config/sections.h"

namespace zerotrain::config_detail {
namespace {

const char* warmup_name(WarmupType t) { return t == WarmupType::kLog ? "log" : "linear"; }

json scheduler_json(const SchedulerParams& params) {
  struct Visitor {
    json operator()(const WarmupLRParams& s) const {
      return {{"warmup_min_lr", s.warmup_min_lr},
              {"warmup_max_lr", s.warmup_max_lr ? json(*s.warmup_max_lr) : json(nullptr)},
              {"warmup_num_steps", s.warmup_num_steps},
              {"warmup_type", warmup_name(s.warmup_type)},
              {"last_batch_iteration", s.last_batch_iteration}};
    }
    json operator()(const WarmupDecayLRParams& s) const {
      return {{"total_num_steps", s.total_num_steps},   {"warmup_min_lr", s.warmup_min_lr},
              {"warmup_max_lr", s.warmup_max_lr},       {"warmup_num_steps", s.warmup_num_steps},
              {"warmup_type", warmup_name(s.warmup_type)}, {"last_batch_iteration", s.last_batch_iteration}};
    }
    json operator()(const WarmupCosineLRParams& s) const {
      return {{"total_num_steps", s.total_num_steps},   {"warmup_min_ratio", s.warmup_min_ratio},
              {"warmup_num_steps", s.warmup_num_steps}, {"cos_min_ratio", s.cos_min_ratio},
              {"warmup_type", warmup_name(s.warmup_type)}, {"last_batch_iteration", s.last_batch_iteration}};
    }
    json operator()(const OneCycleParams& s) const {
      return {{"cycle_min_lr", s.cycle_min_lr},
              {"cycle_max_lr", s.cycle_max_lr},
              {"decay_lr_rate", s.decay_lr_rate},
              {"cycle_first_step_size", s.cycle_first_step_size},
              {"cycle_second_step_size", s.cycle_second_step_size},
              {"cycle_first_stair_count", s.cycle_first_stair_count},
              {"cycle_second_stair_count", s.cycle_second_stair_count},
              {"decay_step_size", s.decay_step_size},
              {"cycle_momentum", s.cycle_momentum},
              {"cycle_min_mom", s.cycle_min_mom},
              {"cycle_max_mom", s.cycle_max_mom},
              {"decay_mom_rate", s.decay_mom_rate},
              {"last_batch_iteration", s.last_batch_iteration}};
    }
    json operator()(const LRRangeTestParams& s) const {
      return {{"lr_range_test_min_lr", s.min_lr},
              {"lr_range_test_step_size", s.step_size},
              {"lr_range_test_step_rate", s.step_rate},
              {"lr_range_test_staircase", s.staircase},
              {"last_batch_iteration", s.last_batch_iteration}};
    }
  };
  return {{"type", scheduler_type_name(params)}, {"params", std::visit(Visitor{}, params)}};
}

json offload_optimizer_json(const OffloadOptimizerConfig& c) {
  json j = {{"device", to_string(c.device)},       {"buffer_count", c.buffer_count},
            {"pin_memory", c.pin_memory},          {"pipeline_read", c.pipeline_read},
            {"pipeline_write", c.pipeline_write},  {"fast_init", c.fast_init},
            {"ratio", c.ratio}};
  j["nvme_path"] = c.nvme_path.empty() ? json(nullptr) : json(c.nvme_path);
  return j;
}

json offload_param_json(const OffloadParamConfig& c) {
  json j = {{"device", to_string(c.device)}, {"buffer_count", c.buffer_count}, {"buffer_size", c.buffer_size},
            {"max_in_cpu", c.max_in_cpu},    {"pin_memory", c.pin_memory}};
  j["nvme_path"] = c.nvme_path.empty() ? json(nullptr) : json(c.nvme_path);
  return j;
}

json monitor_json(const MonitorConfig& m) {
  return {{"enabled", m.enabled}, {"output_path", m.output_path}, {"job_name", m.job_name}};
}

// Writes "auto" back at a dotted path such as "optimizer.params.lr".
void set_auto(json& doc, const std::string& path) {
  json* node = &doc;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) {
      (*node)[key] = "auto";
      return;
    }
    node = &(*node)[key];
    start = dot + 1;
  }
}

}  // namespace

json sections_to_json(const Sections& s, const std::vector<std::string>& unresolved_auto) {
  json doc = json::object();
  if (s.batch_resolved) {
    doc["train_batch_size"] = s.batch.train_batch_size;
    doc["train_micro_batch_size_per_gpu"] = s.batch.micro_batch_per_gpu;
    doc["gradient_accumulation_steps"] = s.batch.gradient_accumulation_steps;
  } else {
    if (s.given_train_batch_size) doc["train_batch_size"] = *s.given_train_batch_size;
    if (s.given_micro_batch) doc["train_micro_batch_size_per_gpu"] = *s.given_micro_batch;
    if (s.given_gradient_accumulation_steps) doc["gradient_accumulation_steps"] = *s.given_gradient_accumulation_steps;
  }
  if (s.optimizer) {
    const OptimizerConfig& o = *s.optimizer;
    json params = {{"lr", o.lr},
                   {"betas", {o.betas[0], o.betas[1]}},
                   {"eps", o.eps},
                   {"weight_decay", o.weight_decay},
                   {"bias_correction", o.bias_correction}};
    if (o.kind == OptimizerKind::kLamb) {
      params["max_coeff"] = o.lamb.max_coeff;
      params["min_coeff"] = o.lamb.min_coeff;
      params["eps_inside_sqrt"] = o.lamb.eps_inside_sqrt;
    } else {
      params["adam_w_mode"] = o.weight_decay_mode == WeightDecayMode::kDecoupled;
      params["torch_adam"] = o.torch_adam;
    }
    doc["optimizer"] = {{"type", to_string(o.kind)}, {"params", params}};
  }
  if (s.scheduler) doc["scheduler"] = scheduler_json(*s.scheduler);

  const Fp16Config& f = s.fp16;
  doc["fp16"] = {{"enabled", f.enabled},
                 {"loss_scale", f.loss_scale},
                 {"initial_scale_power", f.initial_scale_power},
                 {"loss_scale_window", f.loss_scale_window},
                 {"hysteresis", f.hysteresis},
                 {"consecutive_hysteresis", f.consecutive_hysteresis},
                 {"min_loss_scale", f.min_loss_scale},
                 {"min_loss_scale_action", f.min_loss_scale_action == MinLossScaleAction::kRaise ? "raise" : "skip"}};
  doc["bf16"] = {{"enabled", s.bf16.enabled}, {"check_grad_overflow", s.bf16.check_grad_overflow}};

  doc["gradient_clipping"] = s.gradients.clipping;
  doc["gradient_predivide_factor"] = s.gradients.predivide_factor;
  doc["prescale_gradients"] = s.gradients.prescale;
  // While the precision is an unresolved "auto", so is the dtype that follows it.
  const bool precision_unresolved =
      std::find_if(unresolved_auto.begin(), unresolved_auto.end(), [](const std::string& p) {
        return canonical_auto_path(p) == "fp16.enabled" || canonical_auto_path(p) == "bf16.enabled";
      }) != unresolved_auto.end();
  doc["communication_data_type"] = (precision_unresolved && !s.communication_dtype_given)
                                       ? json(nullptr)
                                       : json(to_string(s.gradients.communication_dtype));

  const ZeroConfig& z = s.zero;
  const Stage3Config& s3 = z.stage3;
  doc["zero_optimization"] = {
      {"stage", z.stage},
      {"contiguous_gradients", z.contiguous_gradients},
      {"reduce_scatter", z.reduce_scatter},
      {"reduce_bucket_size", z.reduce_bucket_size},
      {"allgather_bucket_size", z.allgather_bucket_size},
      {"overlap_comm", z.overlap_comm},
      {"allgather_partitions", z.allgather_partitions},
      {"load_from_fp32_weights", z.load_from_fp32_weights},
      {"ignore_unused_parameters", z.ignore_unused_parameters},
      {"offload_optimizer", offload_optimizer_json(z.offload_optimizer)},
      {"offload_param", offload_param_json(z.offload_param)},
  };
  // The stage-3 keys are written only where they apply, so that the output
  // parses back without warnings.
  if (z.stage == 3) {
    json& zj = doc["zero_optimization"];
    zj["sub_group_size"] = z.sub_group_size;
    zj["stage3_prefetch_bucket_size"] = s3.prefetch_bucket_size;
    zj["stage3_param_persistence_threshold"] = s3.param_persistence_threshold;
    zj["stage3_model_persistence_threshold"] = s3.model_persistence_threshold;
    zj["stage3_max_live_parameters"] = s3.max_live_parameters;
    zj["stage3_max_reuse_distance"] = s3.max_reuse_distance;
    zj["stage3_gather_16bit_weights_on_model_save"] = s3.gather_16bit_weights_on_model_save;
    zj["stage3_module_granularity_threshold"] = s3.module_granularity_threshold;
    zj["stage3_use_all_reduce_for_fetch_params"] = s3.use_all_reduce_for_fetch_params;
    zj["stage3_allgather_sequential"] = s3.allgather_sequential;
  }

  const ActivationCheckpointingConfig& a = s.activation_checkpointing;
  doc["activation_checkpointing"] = {
      {"partition_activations", a.partition_activations},
      {"cpu_checkpointing", a.cpu_checkpointing},
      {"contiguous_memory_optimization", a.contiguous_memory_optimization},
      {"number_checkpoints", a.number_checkpoints ? json(*a.number_checkpoints) : json(nullptr)},
      {"synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary},
      {"profile", a.profile}};

  doc["steps_per_print"] = s.logging.steps_per_print ? json(*s.logging.steps_per_print) : json(nullptr);
  doc["wall_clock_breakdown"] = s.logging.wall_clock_breakdown;
  doc["tensorboard"] = monitor_json(s.logging.tensorboard);
  doc["csv_monitor"] = monitor_json(s.logging.csv_monitor);

  const char* tag = s.checkpoint.tag_validation == TagValidation::kWarn     ? "Warn"
                    : s.checkpoint.tag_validation == TagValidation::kIgnore ? "Ignore"
                                                                            : "Fail";
  doc["checkpoint"] = {{"tag_validation", tag}};
  doc["comm"] = {{"timeout_s", s.comm.timeout_s}, {"check_collectives", s.comm.check_collectives}};
  doc["zero_allow_untested_optimizer"] = s.zero_allow_untested_optimizer;
  doc["zero_force_ds_cpu_optimizer"] = s.zero_force_ds_cpu_optimizer;

  for (const std::string& path : unresolved_auto) set_auto(doc, std::string(canonical_auto_path(path)));
  return doc;
}

}  // namespace zerotrain::config_detail
