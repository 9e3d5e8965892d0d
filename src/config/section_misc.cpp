// `activation_checkpointing`, logging and monitors, `checkpoint`, the
// zerotrain `comm` extension, and top-level flags.

#include <string>

#include "config/sections.h"

namespace zerotrain::config_detail {
namespace {

MonitorConfig parse_monitor(ObjectReader r) {
  MonitorConfig m;
  m.enabled = r.get_bool("enabled", false);
  m.output_path = r.get_string("output_path", "");
  m.job_name = r.get_string("job_name", "DeepSpeedJobName");
  if (m.job_name.empty() || m.job_name.find('/') != std::string::npos) {
    r.ctx().error(r.path_of("job_name"), "must be a non-empty name without '/', got \"" + m.job_name + "\"");
  }
  return m;
}

}  // namespace

void parse_misc(ObjectReader& root, Sections& out) {
  ParseContext& ctx = root.ctx();
  {
    ObjectReader r = root.child("activation_checkpointing");
    ActivationCheckpointingConfig& a = out.activation_checkpointing;
    a.partition_activations = r.get_bool("partition_activations", false);
    a.cpu_checkpointing = r.get_bool("cpu_checkpointing", false);
    a.contiguous_memory_optimization = r.get_bool("contiguous_memory_optimization", false);
    a.number_checkpoints = r.get_optional_int("number_checkpoints", Bounds::greater_than(0));
    a.synchronize_checkpoint_boundary = r.get_bool("synchronize_checkpoint_boundary", false);
    a.profile = r.get_bool("profile", false);
    if (a.contiguous_memory_optimization && !a.partition_activations) {
      ctx.error(r.path_of("contiguous_memory_optimization"), "requires partition_activations (as in DeepSpeed)");
    }
    if (a.contiguous_memory_optimization && !a.number_checkpoints) {
      ctx.error(r.path_of("number_checkpoints"), "required when contiguous_memory_optimization is on");
    }
  }
  {
    LoggingConfig& l = out.logging;
    l.steps_per_print = root.get_optional_int("steps_per_print", Bounds::greater_than(0));
    l.wall_clock_breakdown = root.get_bool("wall_clock_breakdown", false);
    l.tensorboard = parse_monitor(root.child("tensorboard"));
    l.csv_monitor = parse_monitor(root.child("csv_monitor"));
  }
  {
    ObjectReader r = root.child("checkpoint");
    CheckpointConfig& c = out.checkpoint;
    c.tag_validation = r.get_enum("tag_validation", TagValidation::kWarn,
                                  {{"Warn", TagValidation::kWarn},
                                   {"Ignore", TagValidation::kIgnore},
                                   {"Fail", TagValidation::kFail}},
                                  /*case_insensitive=*/true);
    r.unsupported_unless("load_universal", false,
                         "reading DeepSpeed's universal checkpoints; zerotrain's own checkpoints load on "
                         "any world size and stage without it");
    r.unsupported_unless("use_node_local_storage", false,
                         "node-local checkpoint storage (zerotrain writes every rank's file into one "
                         "directory that all ranks see)");
    r.unsupported_unless("checkpoint_serialization", true, "the legacy torch.save serialization switch");
    r.unsupported_unless("writer", nullptr, "DeepSpeed's FastPersist checkpoint writers");
    ObjectReader pw = r.child("parallel_write");
    pw.unsupported_unless("pipeline_stage", false, "pipeline-parallel checkpoint writing");
  }
  {
    ObjectReader r = root.child("comm");
    out.comm.timeout_s = r.get_double("timeout_s", 600.0, Bounds::greater_than(0.0));
    out.comm.check_collectives = r.get_bool("check_collectives", false);
  }
  out.zero_allow_untested_optimizer = root.get_bool("zero_allow_untested_optimizer", false);
  out.zero_force_ds_cpu_optimizer = root.get_bool("zero_force_ds_cpu_optimizer", true);
  // DeepSpeed only warns about this value; so does zerotrain.
  if (auto v = root.get_optional_int("vocabulary_size", Bounds::greater_than(0)); v && *v % 8 != 0) {
    ctx.warn("vocabulary_size", "not a multiple of 8 (" + std::to_string(*v) +
                                    "); padding it to one makes fp16/bf16 matrix products faster");
  }
}

}  // namespace zerotrain::config_detail
