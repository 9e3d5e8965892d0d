// What a valid config may ask for that this version's engine does not run
// yet. One list, read by initialize() and by `zerotrain config check`, so the
// two never disagree.

#include <zerotrain/engine.h>

namespace zerotrain {
namespace {

// Offload to host memory runs (Note [Offload keeps the step on the host] in
// src/zero/owned_state.h); NVMe swapping and what only it reads do not.
void offload_settings(const ZeroConfig& z, std::vector<ConfigProblem>& out) {
  const OffloadOptimizerConfig& o = z.offload_optimizer;
  const OffloadParamConfig& p = z.offload_param;
  const std::string opt = "zero_optimization.offload_optimizer.";
  const std::string par = "zero_optimization.offload_param.";
  if (o.device == OffloadDevice::kNvme)
    out.push_back({opt + "device", "\"nvme\" (ZeRO-Infinity swapping) is not supported; use \"cpu\""});
  if (p.device == OffloadDevice::kNvme)
    out.push_back({par + "device", "\"nvme\" (ZeRO-Infinity swapping) is not supported; use \"cpu\""});
  if (o.enabled() && o.ratio < 1.0)
    out.push_back({opt + "ratio", "partial offload is not implemented; zerotrain offloads the whole optimizer "
                                  "state (ratio 1.0)"});
  if (p.enabled() && !o.enabled())
    out.push_back({"zero_optimization.offload_param", "parameter offload runs the step on the host and needs "
                                                      "offload_optimizer.device \"cpu\" as well"});
  // NVMe swapping's own settings: with device "cpu" they would do nothing
  // (with "nvme" the device itself is the problem reported).
  const bool ocpu = o.device == OffloadDevice::kCpu, pcpu = p.device == OffloadDevice::kCpu;
  const OffloadOptimizerConfig od;
  const OffloadParamConfig pd;
  const struct {
    std::string key;
    bool set;
  } nvme_only[] = {{opt + "nvme_path", ocpu && !o.nvme_path.empty()},
                   {opt + "buffer_count", ocpu && o.buffer_count != od.buffer_count},
                   {opt + "pipeline_read", ocpu && o.pipeline_read},
                   {opt + "pipeline_write", ocpu && o.pipeline_write},
                   {opt + "fast_init", ocpu && o.fast_init},
                   {par + "nvme_path", pcpu && !p.nvme_path.empty()},
                   {par + "buffer_count", pcpu && p.buffer_count != pd.buffer_count},
                   {par + "buffer_size", pcpu && p.buffer_size != pd.buffer_size},
                   {par + "max_in_cpu", pcpu && p.max_in_cpu != pd.max_in_cpu}};
  for (const auto& k : nvme_only)
    if (k.set)
      out.push_back({k.key, "an NVMe swapping setting, which has no effect with device \"cpu\" and is not "
                            "supported; remove it"});
}

}  // namespace

std::vector<ConfigProblem> unsupported_settings(const Config& c) {
  std::vector<ConfigProblem> out;
  const ZeroConfig& z = c.zero();
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
  offload_settings(z, out);
  if (!z.allgather_partitions)
    out.push_back({"zero_optimization.allgather_partitions",
                   "false (broadcast each partition) is not implemented; zerotrain all-gathers"});
  if (!c.optimizer())
    out.push_back({"optimizer",
                   "the config has no optimizer section; zerotrain's engine runs the optimizer it names "
                   "(Adam, AdamW or Lamb) and takes no client optimizer"});
  if (c.optimizer() && c.optimizer()->torch_adam)
    out.push_back({"optimizer.params.torch_adam",
                   "LibTorch's unfused Adam is not offered: zerotrain's fused Adam/AdamW computes the same update "
                   "in one pass; remove torch_adam"});
  // Honoured: cpu_checkpointing, synchronize_checkpoint_boundary, profile
  // (checkpointing::CheckpointOptions::from_config).
  const ActivationCheckpointingConfig& a = c.activation_checkpointing();
  if (a.partition_activations)
    out.push_back({"activation_checkpointing.partition_activations",
                   "partitions saved activations across the model-parallel group, and zerotrain has no model "
                   "parallelism; remove it (cpu_checkpointing moves them to host memory instead)"});
  if (a.contiguous_memory_optimization)
    out.push_back({"activation_checkpointing.contiguous_memory_optimization",
                   "contiguous buffers for partitioned activations are not implemented; remove it"});
  if (a.number_checkpoints)
    out.push_back({"activation_checkpointing.number_checkpoints",
                   "only sizes the buffers of contiguous_memory_optimization, which is not implemented; remove "
                   "it (which layers are recomputed is chosen by marking them: docs/activation_checkpointing.md)"});
  return out;
}

void require_supported(const Config& config) {
  if (std::vector<ConfigProblem> problems = unsupported_settings(config); !problems.empty())
    throw ConfigError(config.source(), std::move(problems));
}

}  // namespace zerotrain
