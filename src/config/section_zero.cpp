// `zero_optimization` (runtime/zero/config.py and offload_config.py): the stage,
// bucket sizes, offload, the stage3_* keys with their short aliases, and the
// deprecated spellings DeepSpeed still translates.

#include <string>

#include "config/sections.h"

namespace zerotrain::config_detail {
namespace {

OffloadDevice read_device(ObjectReader& r) {
  return r.get_enum("device", OffloadDevice::kNone,
                    {{"none", OffloadDevice::kNone}, {"cpu", OffloadDevice::kCpu}, {"nvme", OffloadDevice::kNvme}});
}

void parse_offload_optimizer(ObjectReader r, OffloadOptimizerConfig& c) {
  const Bounds non_negative = Bounds::at_least(0);
  c.device = read_device(r);
  c.nvme_path = r.get_string("nvme_path", "");
  c.buffer_count = r.get_int("buffer_count", 4, non_negative);
  c.pin_memory = r.get_bool("pin_memory", true);
  c.pipeline_read = r.get_bool("pipeline_read", false);
  c.pipeline_write = r.get_bool("pipeline_write", false);
  c.fast_init = r.get_bool("fast_init", false);
  c.ratio = r.get_double("ratio", 1.0, Bounds::closed(0.0, 1.0));
  r.unsupported_unless("super_offload", false, "SuperOffload");
  r.unsupported_unless("cpuadam_cores_perc", 0.8, "a CPU core share for CPU Adam; set OMP_NUM_THREADS instead");
  if (c.device == OffloadDevice::kNvme && c.nvme_path.empty()) {
    r.ctx().error(r.path_of("nvme_path"), "required when device is \"nvme\"");
  }
}

void parse_offload_param(ObjectReader r, OffloadParamConfig& c) {
  const Bounds non_negative = Bounds::at_least(0);
  c.device = read_device(r);
  c.nvme_path = r.get_string("nvme_path", "");
  c.buffer_count = r.get_int("buffer_count", 5, non_negative);
  c.buffer_size = r.get_int("buffer_size", 100'000'000, non_negative);
  c.max_in_cpu = r.get_int("max_in_cpu", 1'000'000'000, non_negative);
  c.pin_memory = r.get_bool("pin_memory", true);
  if (c.device == OffloadDevice::kNvme && c.nvme_path.empty()) {
    r.ctx().error(r.path_of("nvme_path"), "required when device is \"nvme\"");
  }
}

void check_even_allgather(ParseContext& ctx, const std::string& path, int64_t size) {
  if (size % 2 != 0) ctx.error(path, "must be even (DeepSpeed requires it), got " + std::to_string(size));
}

// A deprecated boolean that DeepSpeed turns into {"device": "cpu"} of a newer section.
void translate_cpu_offload(ObjectReader& z, const char* old_key, const char* new_key, OffloadDevice& device) {
  const json* v = z.raw(old_key);
  if (v == nullptr || v->is_null()) return;
  const bool on = z.get_bool(old_key, false);
  const json* newer = z.raw(new_key);
  if (newer != nullptr && !newer->is_null()) {
    z.ctx().error(z.path_of(old_key), "deprecated spelling of \"" + std::string(new_key) + "\", which is also given; "
                                      "remove \"" + old_key + "\"");
    return;
  }
  z.ctx().warn(z.path_of(old_key), std::string("deprecated; use \"") + new_key + "\": {\"device\": \"cpu\"}");
  if (on) device = OffloadDevice::kCpu;
}

}  // namespace

void parse_zero(ObjectReader& root, Sections& out) {
  ParseContext& ctx = root.ctx();
  ZeroConfig& c = out.zero;
  const json* section = root.raw("zero_optimization");

  // Legacy boolean form: true means stage 1, with the top-level allgather_size.
  if (section != nullptr && section->is_boolean()) {
    c.stage = section->get<bool>() ? 1 : 0;
    ctx.warn("zero_optimization", "the boolean form is deprecated; use {\"stage\": " + std::to_string(c.stage) + "}");
    c.allgather_bucket_size = root.get_int("allgather_size", 500'000'000, Bounds::at_least(0));
    check_even_allgather(ctx, "allgather_size", c.allgather_bucket_size);
    return;
  }
  if (root.has("allgather_size")) {
    ctx.error("allgather_size", "only read with the legacy boolean \"zero_optimization\"; use "
                                "zero_optimization.allgather_bucket_size");
  }

  ObjectReader z = root.child("zero_optimization");
  const Bounds non_negative = Bounds::at_least(0);
  const json* stage = z.raw("stage");
  if (stage != nullptr && stage->is_boolean()) {
    c.stage = stage->get<bool>() ? 1 : 0;  // as DeepSpeed's enum coercion
  } else {
    const int64_t s = z.get_int("stage", 0, Bounds::at_least(0));
    if (s > 3) {
      ctx.error(z.path_of("stage"), "must be 0, 1, 2 or 3 (ZeRO has no stage above 3), got " + std::to_string(s));
    } else {
      c.stage = static_cast<int>(s);
    }
  }
  c.contiguous_gradients = z.get_bool("contiguous_gradients", true);
  if (!c.contiguous_gradients) {
    if (c.stage >= 2) {
      ctx.error(z.path_of("contiguous_gradients"),
                "false is not implemented: zerotrain packs each unit's gradients into one contiguous bucket "
                "for its reduce-scatter; remove the key or set it to true");
    } else {
      ctx.warn(z.path_of("contiguous_gradients"),
               "false has no effect at stage " + std::to_string(c.stage) +
                   ": every unit's gradients are one contiguous buffer at stages 0 and 1");
    }
  }
  c.reduce_scatter = z.get_bool("reduce_scatter", true);
  c.reduce_bucket_size = z.get_int("reduce_bucket_size", 500'000'000, non_negative);
  c.allgather_bucket_size = z.get_int("allgather_bucket_size", 500'000'000, non_negative);
  check_even_allgather(ctx, z.path_of("allgather_bucket_size"), c.allgather_bucket_size);
  if (c.stage == 3 && z.has("allgather_bucket_size")) {
    ctx.warn(z.path_of("allgather_bucket_size"),
             "has no effect at stage 3: each unit's parameters are gathered by one all-gather of their own "
             "(stage3_prefetch_bucket_size bounds how many are gathered ahead)");
  }
  // DeepSpeed's None: on for stage 3 only.
  const json* overlap = z.raw("overlap_comm");
  c.overlap_comm = (overlap == nullptr || overlap->is_null()) ? c.stage == 3 : z.get_bool("overlap_comm", false);
  c.allgather_partitions = z.get_bool("allgather_partitions", true);
  c.load_from_fp32_weights = z.get_bool("load_from_fp32_weights", true);
  if (z.has("use_multi_rank_bucket_allreduce")) {
    z.get_bool("use_multi_rank_bucket_allreduce", true);
    ctx.warn(z.path_of("use_multi_rank_bucket_allreduce"),
             "has no effect: it chooses between DeepSpeed's bucketed all-reduce (true) and a reduce per "
             "owner (false), and zerotrain issues one reduce-scatter per unit instead (set reduce_scatter: "
             "false for an all-reduce per unit)");
  }
  c.ignore_unused_parameters = z.get_bool("ignore_unused_parameters", true);
  c.sub_group_size = z.get_int("sub_group_size", 1'000'000'000, non_negative);
  if (c.stage == 3 && c.sub_group_size < 1) {
    ctx.error(z.path_of("sub_group_size"), "must be at least 1 at stage 3 (the optimizer's sub-group size)");
  }
  if (z.has("sub_group_size") && c.stage < 3) {
    ctx.warn(z.path_of("sub_group_size"), "has no effect at stage " + std::to_string(c.stage) +
                                              ": it tiles the optimizer step at stage 3 only");
  }

  parse_offload_optimizer(z.child("offload_optimizer"), c.offload_optimizer);
  parse_offload_param(z.child("offload_param"), c.offload_param);
  translate_cpu_offload(z, "cpu_offload", "offload_optimizer", c.offload_optimizer.device);
  translate_cpu_offload(z, "cpu_offload_param", "offload_param", c.offload_param.device);
  if (z.has("cpu_offload_use_pin_memory")) {
    z.get_bool("cpu_offload_use_pin_memory", false);
    ctx.warn(z.path_of("cpu_offload_use_pin_memory"),
             "deprecated and without effect (as in DeepSpeed); use offload_*.pin_memory");
  }

  // The stage3_* keys, each also accepted under its short name.
  Stage3Config& s3 = c.stage3;
  auto int_key = [&](const char* long_name, const char* short_name, int64_t fallback, Bounds b) {
    return z.get_int(z.resolve_alias(long_name, short_name), fallback, b);
  };
  auto bool_key = [&](const char* long_name, const char* short_name, bool fallback) {
    return z.get_bool(z.resolve_alias(long_name, short_name), fallback);
  };
  s3.prefetch_bucket_size = int_key("stage3_prefetch_bucket_size", "prefetch_bucket_size", 50'000'000, non_negative);
  s3.param_persistence_threshold =
      int_key("stage3_param_persistence_threshold", "param_persistence_threshold", 100'000, non_negative);
  s3.model_persistence_threshold =
      int_key("stage3_model_persistence_threshold", "model_persistence_threshold", INT64_MAX, non_negative);
  s3.max_live_parameters =
      int_key("stage3_max_live_parameters", "max_live_parameters", 1'000'000'000, non_negative);
  s3.max_reuse_distance = int_key("stage3_max_reuse_distance", "max_reuse_distance", 1'000'000'000, non_negative);
  s3.module_granularity_threshold =
      int_key("stage3_module_granularity_threshold", "module_granularity_threshold", 0, Bounds::any());
  s3.use_all_reduce_for_fetch_params =
      bool_key("stage3_use_all_reduce_for_fetch_params", "use_all_reduce_for_fetch_params", false);
  s3.allgather_sequential = bool_key("stage3_allgather_sequential", "allgather_sequential", false);
  const std::string gather_key =
      z.resolve_alias("stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save");
  s3.gather_16bit_weights_on_model_save = z.get_bool(gather_key, false);
  if (z.has("stage3_gather_fp16_weights_on_model_save")) {
    if (z.has(gather_key)) {
      ctx.error(z.path_of("stage3_gather_fp16_weights_on_model_save"),
                "deprecated spelling of \"" + gather_key + "\", which is also given; remove it");
    } else {
      ctx.warn(z.path_of("stage3_gather_fp16_weights_on_model_save"),
               "deprecated; use \"stage3_gather_16bit_weights_on_model_save\"");
      s3.gather_16bit_weights_on_model_save = z.get_bool("stage3_gather_fp16_weights_on_model_save", false);
    }
  }

  // The stage3_* keys act at stage 3 only (as in DeepSpeed): say so when they are given below it.
  if (c.stage < 3) {
    std::string given;
    for (const char* key : {"stage3_prefetch_bucket_size", "prefetch_bucket_size", "stage3_param_persistence_threshold",
                            "param_persistence_threshold", "stage3_model_persistence_threshold",
                            "model_persistence_threshold", "stage3_max_live_parameters", "max_live_parameters",
                            "stage3_max_reuse_distance", "max_reuse_distance",
                            "stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save",
                            "stage3_gather_fp16_weights_on_model_save", "stage3_module_granularity_threshold",
                            "module_granularity_threshold", "stage3_use_all_reduce_for_fetch_params",
                            "use_all_reduce_for_fetch_params", "stage3_allgather_sequential", "allgather_sequential"})
      if (z.has(key)) given += (given.empty() ? "" : ", ") + std::string(key);
    if (!given.empty()) {
      ctx.warn(z.path_of("stage"), "the stage-3 settings " + given + " have no effect at stage " +
                                       std::to_string(c.stage));
    }
  }

  // Known DeepSpeed keys zerotrain does not implement.
  z.unsupported_unless("elastic_checkpoint", false, "elastic checkpoints; zerotrain checkpoints load on any world size");
  z.unsupported_unless("legacy_stage1", false, "the legacy stage 1 implementation");
  z.unsupported_unless("round_robin_gradients", false, "round-robin gradient partitioning");
  z.unsupported_unless("zero_hpz_partition_size", 1, "ZeRO++ hierarchical partitioning (hpZ)");
  z.unsupported_unless("zero_quantized_weights", false, "ZeRO++ quantized weights (qwZ)");
  z.unsupported_unless("zero_quantized_nontrainable_weights", false, "ZeRO++ quantized weights");
  z.unsupported_unless("zero_quantized_gradients", false, "ZeRO++ quantized gradients (qgZ)");
  z.unsupported_unless("zeropp_loco_param", nullptr, "ZeRO++ LoCo");
  z.unsupported_unless("mics_shard_size", -1, "MiCS");
  z.unsupported_unless("mics_hierarchical_params_gather", false, "MiCS");
  z.unsupported_unless("pipeline_loading_checkpoint", false, "pipeline-parallel checkpoint loading");
  z.unsupported_unless("zenflow", nullptr, "ZenFlow");
  z.unsupported_unless("save_muon_momentum_buffer_in_memory", false, "the Muon optimizer");
  z.unsupported_unless("memory_efficient_linear", true, "turning off the memory-efficient linear layer");
  z.unsupported_unless("override_module_apply", true, "turning off the gathered module.apply");
  z.unsupported_unless("log_trace_cache_warnings", false, "trace-cache warnings");
  z.unsupported_unless("enable_sanity_checks", false, "DeepSpeed's stage-3 sanity checks");
  z.unsupported_unless("leaf_module", json::object(), "configured ZeRO-3 leaf modules");
}

}  // namespace zerotrain::config_detail
