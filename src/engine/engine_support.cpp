// What a valid config may ask for that this version's engine does not run
// yet. One list, read by initialize() and by `zerotrain config check`, so the
// two never disagree.

#include <zerotrain/engine.h>

namespace zerotrain {

std::vector<ConfigProblem> unsupported_settings(const Config& c) {
  std::vector<ConfigProblem> out;
  const ZeroConfig& z = c.zero();
  if (z.offload_param.enabled())
    out.push_back({"zero_optimization.offload_param",
                   "parameter offload is not implemented yet; set its device to \"none\""});
  const Stage3Config& s3 = z.stage3;
  if (s3.module_granularity_threshold != 0)
    out.push_back({"zero_optimization.stage3_module_granularity_threshold",
                   "automatic leaf modules are not implemented; units are chosen by the wrap policy (mark layers "
                   "with zerotrain::Unit, or WrapPolicy::by_size / by_module_type); leave it 0"});
  if (s3.use_all_reduce_for_fetch_params)
    out.push_back({"zero_optimization.stage3_use_all_reduce_for_fetch_params",
                   "fetching parameters with an all-reduce is not implemented; zerotrain all-gathers each unit"});
  if (s3.allgather_sequential)
    out.push_back({"zero_optimization.stage3_allgather_sequential",
                   "gathering one parameter at a time is not implemented; zerotrain gathers each unit as one"});
  if (z.offload_optimizer.enabled())
    out.push_back({"zero_optimization.offload_optimizer",
                   "optimizer offload is not implemented yet; set its device to \"none\""});
  if (!z.allgather_partitions)
    out.push_back({"zero_optimization.allgather_partitions",
                   "false (broadcast each partition) is not implemented; zerotrain all-gathers"});
  if (!c.optimizer())
    out.push_back({"optimizer",
                   "the config has no optimizer section; zerotrain's engine runs the optimizer it names "
                   "(Adam, AdamW or Lamb) and takes no client optimizer"});
  const ActivationCheckpointingConfig& a = c.activation_checkpointing();
  const struct {
    const char* key;
    bool on;
  } checkpointing[] = {{"partition_activations", a.partition_activations},
                       {"cpu_checkpointing", a.cpu_checkpointing},
                       {"contiguous_memory_optimization", a.contiguous_memory_optimization},
                       {"number_checkpoints", a.number_checkpoints.has_value()},
                       {"synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary},
                       {"profile", a.profile}};
  for (const auto& k : checkpointing)
    if (k.on)
      out.push_back({std::string("activation_checkpointing.") + k.key,
                     "activation checkpointing is not implemented yet; remove the setting"});
  return out;
}

}  // namespace zerotrain
