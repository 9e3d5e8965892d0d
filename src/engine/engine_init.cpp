// zerotrain::initialize: from a module and a config to a running engine.
// Validation happens here, once; the parts it builds (groups, reducer, scaler,
// schedule) never look at the config again.

#include <zerotrain/distributed.h>
#include <zerotrain/engine.h>

#include "checkpoint/agree.h"
#include "engine/engine_state.h"
#include "precision/scalar_type.h"

#include <c10/core/GradMode.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <unordered_map>

namespace zerotrain {

namespace {

using precision::scalar_type;

void config_error(const Config& c, const std::string& path, const std::string& message) {
  throw ConfigError(c.source(), {{path, message}});
}

// What this version runs; every other setting the config layer accepted is honoured.
void check_supported(const Config& c) {
  const ZeroConfig& z = c.zero();
  if (z.stage > 2)
    config_error(c, "zero_optimization.stage",
                 "stage " + std::to_string(z.stage) +
                     " (parameters sharded at rest) is not implemented yet; use stage 0, 1 or 2");
  if (z.offload_optimizer.enabled())
    config_error(c, "zero_optimization.offload_optimizer",
                 "optimizer offload is not implemented yet; set its device to \"none\"");
  if (!z.allgather_partitions)
    config_error(c, "zero_optimization.allgather_partitions",
                 "false (broadcast each partition) is not implemented; zerotrain all-gathers");
  if (!c.optimizer())
    config_error(c, "optimizer",
                 "the config has no optimizer section; zerotrain's engine runs the optimizer it "
                 "names (Adam, AdamW or Lamb) and takes no client optimizer");
}

int64_t alignment_elements(at::ScalarType dtype) {
  // 16 bytes: vector loads in the kernels and NCCL's preferred alignment.
  return std::max<int64_t>(1, 16 / static_cast<int64_t>(c10::elementSize(dtype)));
}

std::vector<zero::GroupSpec> make_group_specs(const torch::nn::Module& module,
                                              const OptimizerConfig& opt,
                                              const std::vector<ParamGroup>& given) {
  std::vector<std::pair<std::string, at::Tensor>> trainable;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) trainable.emplace_back(item.key(), item.value());
  TORCH_CHECK(!trainable.empty(), "zerotrain::initialize: the model has no parameter that requires grad");

  std::vector<zero::GroupSpec> specs;
  if (given.empty()) {
    zero::GroupSpec s;
    for (auto& [name, p] : trainable) {
      s.names.push_back(name);
      s.params.push_back(p);
    }
    s.lr = opt.lr;
    s.weight_decay = opt.weight_decay;
    specs.push_back(std::move(s));
    return specs;
  }

  std::unordered_map<const void*, std::string> name_of;
  for (auto& [name, p] : trainable) name_of.emplace(p.unsafeGetTensorImpl(), name);
  std::unordered_map<const void*, size_t> group_of;
  for (size_t g = 0; g < given.size(); ++g) {
    TORCH_CHECK(!given[g].params.empty(), "zerotrain::initialize: parameter group ", g, " is empty");
    zero::GroupSpec s;
    for (const at::Tensor& p : given[g].params) {
      auto it = name_of.find(p.unsafeGetTensorImpl());
      TORCH_CHECK(it != name_of.end(), "zerotrain::initialize: parameter group ", g,
                  " holds a tensor that is not a trainable parameter of the model (a frozen "
                  "parameter, or a copy instead of the parameter itself?)");
      auto [prev, fresh] = group_of.emplace(p.unsafeGetTensorImpl(), g);
      TORCH_CHECK(fresh, "zerotrain::initialize: parameter '", it->second, "' is in groups ",
                  prev->second, " and ", g, "; a parameter belongs to one group");
      s.names.push_back(it->second);
      s.params.push_back(p);
    }
    s.lr = given[g].lr.value_or(opt.lr);
    s.weight_decay = given[g].weight_decay.value_or(opt.weight_decay);
    specs.push_back(std::move(s));
  }
  for (auto& [name, p] : trainable)
    TORCH_CHECK(group_of.count(p.unsafeGetTensorImpl()), "zerotrain::initialize: parameter '", name,
                "' requires grad but is in no parameter group; add it to one or freeze it "
                "(requires_grad_(false))");
  return specs;
}

}  // namespace

Engine initialize(std::shared_ptr<torch::nn::Module> model, const Config& config_in,
                  InitOptions options) {
  TORCH_CHECK(model, "zerotrain::initialize: the model is null");
  std::shared_ptr<Communicator> comm = options.communicator;
  if (!comm) {
    DistributedOptions d;
    d.comm = CommOptions::from_config(config_in);
    comm = init_distributed(d);
  }
  // The batch triple follows the real data-parallel world size, as in DeepSpeed.
  Config config = config_in;
  if (config.resolve_options().world_size != comm->world_size()) {
    ResolveOptions ro = config.resolve_options();
    ro.world_size = comm->world_size();
    config = config.resolved(ro);
  }
  config.require_resolved();
  check_supported(config);

  auto state = std::make_unique<detail::EngineState>(
      config, precision::LossScaler::from_config(config.fp16()));
  detail::EngineState& s = *state;
  s.module = model;
  s.comm = comm;
  s.optimizer = *config.optimizer();
  s.check_overflow = config.fp16().enabled || (config.bf16().enabled && config.bf16().check_grad_overflow);

  const at::ScalarType dtype = scalar_type(config.model_dtype());
  if (dtype != at::kFloat) model->to(dtype);  // DeepSpeed's module.half() / bfloat16()

  std::vector<zero::GroupSpec> specs = make_group_specs(*model, s.optimizer, options.param_groups);
  s.device = specs.front().params.front().device();
  for (const auto& spec : specs)
    for (size_t i = 0; i < spec.params.size(); ++i)
      TORCH_CHECK(spec.params[i].device() == s.device && spec.params[i].scalar_type() == dtype,
                  "zerotrain::initialize: parameter '", spec.names[i], "' is ",
                  spec.params[i].scalar_type(), " on ", spec.params[i].device(), "; every trained "
                  "parameter must be ", dtype, " on ", s.device);
  for (const auto& p : model->parameters())
    if (!p.requires_grad()) s.frozen_param_bytes += static_cast<int64_t>(p.nbytes());

  const ZeroConfig& z = config.zero();
  zero::GroupPlacement placement{z.sharding(), comm->rank(), comm->world_size(),
                                 z.reduce_bucket_size, alignment_elements(dtype)};
  s.groups.reserve(specs.size());  // the reducer keeps references: no reallocation after this
  for (auto& spec : specs) s.groups.emplace_back(std::move(spec), placement, *comm);
  {
    // Buffers (running statistics and the like) start from rank 0's too.
    c10::NoGradGuard no_grad;
    for (const auto& b : model->buffers()) {
      if (b.numel() == 0) continue;
      at::Tensor c = b.contiguous();
      comm->broadcast(c, 0).wait();
      if (!c.is_same(b)) b.copy_(c);
    }
  }

  zero::ReducePlan plan;
  plan.policy = z.sharding();
  plan.overlap = z.overlap_comm;
  plan.reduce_scatter = z.reduce_scatter;
  plan.comm_dtype = scalar_type(config.gradients().communication_dtype);
  plan.predivide_factor = config.gradients().predivide_factor;
  plan.ignore_unused_parameters = z.ignore_unused_parameters;
  s.reducer = std::make_unique<zero::GradReducer>(s.groups, *comm, plan, std::move(options.observer));

  if (config.scheduler()) s.scheduler.emplace(*config.scheduler(), s.optimizer.lr);
  s.sync_timers = config.logging().wall_clock_breakdown && s.device.type() != c10::kCPU;
  monitor::RunFacts facts;
  facts.rank = comm->rank();
  facts.world_size = comm->world_size();
  facts.device = s.device;
  facts.dtype = dtype;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) facts.trainable_params += p.numel();
  facts.train_batch_size = config.batch().train_batch_size;
  facts.report_loss_scale = config.fp16().enabled;
  // Rank 0 creates the monitors' directories; every rank learns if that failed.
  const std::string monitor_error = checkpoint::capture_error(
      [&] { s.reporter = std::make_unique<monitor::Reporter>(config.logging(), options.progress, facts); });
  checkpoint::agree(*comm, s.device, monitor_error, "setting up csv_monitor/tensorboard");
  s.stats_at_boundary = comm->stats();
  return Engine(std::move(state));
}

}  // namespace zerotrain
