// zerotrain::initialize: from a module and a config to a running engine.
// Validation happens here, once; the parts it builds (the core, the progress,
// the telemetry) never look at the config's raw values again.

#include <zerotrain/distributed.h>
#include <zerotrain/engine.h>

#include "checkpoint/agree.h"
#include "engine/engine_impl.h"
#include "engine/module_units.h"
#include "engine/rank_agreement.h"
#include "engine/rank_devices.h"
#include "engine/sharded_params.h"
#include "precision/scalar_type.h"

#include <c10/core/GradMode.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <functional>
#include <iostream>
#include <unordered_map>

namespace zerotrain {

namespace {

using precision::scalar_type;

// Optimizer groups over the core's parameter indices.
std::vector<zero::OptimizerGroupSpec> make_groups(const zero::ModelSpec& spec, const OptimizerConfig& opt,
                                                  const std::vector<ParamGroup>& given) {
  std::vector<zero::OptimizerGroupSpec> groups;
  if (given.empty()) {
    zero::OptimizerGroupSpec g{opt.lr, opt.weight_decay, {}};
    for (size_t p = 0; p < spec.params.size(); ++p) g.params.push_back(static_cast<int>(p));
    groups.push_back(std::move(g));
    return groups;
  }
  std::unordered_map<const void*, int> index_of;
  for (size_t p = 0; p < spec.params.size(); ++p)
    index_of.emplace(spec.params[p].tensor.unsafeGetTensorImpl(), static_cast<int>(p));
  std::vector<int> group_of(spec.params.size(), -1);
  for (size_t g = 0; g < given.size(); ++g) {
    TORCH_CHECK(!given[g].params.empty(), "zerotrain::initialize: parameter group ", g, " is empty");
    zero::OptimizerGroupSpec out{given[g].lr.value_or(opt.lr), given[g].weight_decay.value_or(opt.weight_decay), {}};
    for (const at::Tensor& t : given[g].params) {
      auto it = index_of.find(t.unsafeGetTensorImpl());
      TORCH_CHECK(it != index_of.end(), "zerotrain::initialize: parameter group ", g,
                  " holds a tensor that is not a trainable parameter of the model (a frozen "
                  "parameter, or a copy instead of the parameter itself?)");
      int& owner = group_of[static_cast<size_t>(it->second)];
      TORCH_CHECK(owner < 0, "zerotrain::initialize: parameter '", spec.params[static_cast<size_t>(it->second)].name,
                  "' is in groups ", owner, " and ", g, "; a parameter belongs to one group");
      owner = static_cast<int>(g);
      out.params.push_back(it->second);
    }
    groups.push_back(std::move(out));
  }
  for (size_t p = 0; p < spec.params.size(); ++p)
    TORCH_CHECK(group_of[p] >= 0, "zerotrain::initialize: parameter '", spec.params[p].name,
                "' requires grad but is in no parameter group; add it to one or freeze it "
                "(requires_grad_(false))");
  return groups;
}

zero::CorePlan core_plan(const Config& config) {
  const ZeroConfig& z = config.zero();
  zero::CorePlan plan;
  plan.policy = z.sharding();
  plan.reduce.overlap = z.overlap_comm;
  plan.reduce.reduce_scatter = z.reduce_scatter;
  plan.reduce.comm_dtype = scalar_type(config.gradients().communication_dtype);
  plan.reduce.ignore_unused_parameters = z.ignore_unused_parameters;
  plan.prescale_gradients = config.gradients().prescale;
  plan.predivide_factor = config.gradients().predivide_factor;
  plan.allgather_bucket_numel = z.allgather_bucket_size;
  const Stage3Config& s3 = z.stage3;
  plan.gather.prefetch_bucket_numel = s3.prefetch_bucket_size;
  plan.gather.max_live_numel = s3.max_live_parameters;
  plan.gather.max_reuse_distance = s3.max_reuse_distance;
  plan.gather.persistence_threshold = s3.param_persistence_threshold;
  plan.gather.model_persistence_threshold = s3.model_persistence_threshold;
  plan.sub_group_numel = z.stage == 3 ? z.sub_group_size : INT64_MAX;  // a stage-3 key (DeepSpeed)
  plan.offload.optimizer = z.offload_optimizer.device == OffloadDevice::kCpu;
  plan.offload.params = z.offload_param.device == OffloadDevice::kCpu;
  // DeepSpeed pins when either section asks; both default to true.
  plan.offload.pin_memory = (plan.offload.optimizer && z.offload_optimizer.pin_memory) ||
                            (plan.offload.params && z.offload_param.pin_memory);
  return plan;
}

// Note [Sharded at creation] (sharded_init.cpp).
void check_sharded_init(const ShardedParameters& sharded, const Communicator& comm, int stage, at::ScalarType dtype) {
  TORCH_CHECK(stage == 3, "zerotrain::initialize: InitOptions::sharded_init needs zero_optimization.stage 3; the "
              "config has stage ", stage);
  TORCH_CHECK(&sharded.comm() == &comm || (sharded.comm().world_size() == comm.world_size() &&
                                           sharded.comm().rank() == comm.rank()),
              "zerotrain::initialize: the model was sharded at creation over ", sharded.comm().world_size(),
              " ranks, and the engine runs on ", comm.world_size());
  TORCH_CHECK(sharded.dtype() == dtype, "zerotrain::initialize: the model was sharded at creation in ",
              sharded.dtype(), " and the config's model dtype is ", dtype);
}

void take_pieces(ShardedParameters& sharded, torch::nn::Module& model, zero::ModelSpec& spec) {
  for (zero::NamedParameter& p : spec.params) p.piece = sharded.take(p.tensor);
  const std::vector<at::Tensor> left = sharded.untaken();
  if (left.empty()) return;
  std::string name = "?";
  for (const auto& item : model.named_parameters(/*recurse=*/true))
    if (item.value().is_same(left.front())) name = item.key();
  TORCH_CHECK(false, "zerotrain::initialize: parameter '", name, "' was sharded at creation but is not trained "
              "(frozen after the ShardedInit scope, or not part of this model); freeze parameters inside the "
              "layer's constructor, or build the layer outside the scope");
}

// InitOptions::warn, or standard error.
void warn(const InitOptions& options, const std::string& line) {
  if (options.warn) options.warn(line);
  else std::cerr << "zerotrain: " << line << "\n";
}

// The config resolved against the communicator and checked, once.
struct Prepared {
  Config config;
  std::shared_ptr<Communicator> comm;
  at::ScalarType dtype;
};

Prepared prepare(const Config& config_in, const InitOptions& options) {
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
  require_supported(config);
  if (comm->rank() == 0)
    for (const ConfigProblem& w : config.warnings())
      warn(options, config.source() + ": " + w.path + ": warning: " + w.message);
  const at::ScalarType dtype = scalar_type(config.model_dtype());
  return {std::move(config), std::move(comm), dtype};
}

// Everything after the model became a ModelSpec: the core, the buffers from
// rank 0, the telemetry. `attach` points the front end's unit wrappers at the core.
Engine build(Prepared p, zero::ModelSpec spec, std::unique_ptr<detail::ModelAccess> model, InitOptions& options,
             const std::function<void(const std::shared_ptr<zero::ShardedModel>&,
                                      const checkpointing::CheckpointOptions&)>& attach) {
  const Config& config = p.config;
  const std::shared_ptr<Communicator>& comm = p.comm;
  for (const zero::NamedParameter& param : spec.params)
    TORCH_CHECK(param.tensor.scalar_type() == p.dtype, "zerotrain::initialize: parameter '", param.name, "' is ",
                param.tensor.scalar_type(), "; every trained parameter must be ", p.dtype);
  spec.groups = make_groups(spec, *config.optimizer(), options.param_groups);
  {
    // Note [Every rank starts from the same model and config] (rank_agreement.h).
    const bool sharded = !spec.params.empty() && spec.params.front().piece.defined();
    const c10::Device device = spec.params.empty() ? c10::Device(c10::kCPU)
                               : sharded          ? spec.params.front().piece.device()
                                                  : spec.params.front().tensor.device();
    detail::check_one_gpu_per_rank(*comm, device);  // Note [One GPU per rank under NCCL] (rank_devices.h)
    const std::string warning = detail::check_ranks_agree(*comm, device, config, spec, sharded);
    if (!warning.empty() && comm->rank() == 0) warn(options, warning);
  }

  // Note [Gathers and reductions travel on separate channels] (comm/communicator.cpp).
  detail::Channels channels{comm, comm->open_channel("gather")};
  auto impl = std::make_unique<detail::EngineImpl>(config, std::move(model), channels);
  detail::EngineImpl& s = *impl;
  s.optimizer = *config.optimizer();
  for (const detail::ModuleTensor& t : s.model->module_tensors())
    if (t.kind == "frozen_parameter") s.frozen_param_bytes += static_cast<int64_t>(t.tensor.nbytes());

  s.core = std::make_shared<zero::ShardedModel>(std::move(spec), core_plan(config), *channels.reduce,
                                                *channels.gather, std::move(options.observer));
  const checkpointing::CheckpointOptions checkpointing =
      checkpointing::CheckpointOptions::from_config(config.activation_checkpointing());
  s.checkpoint_profile = checkpointing.profile;
  if (attach) attach(s.core, checkpointing);
  {
    // Buffers (running statistics and the like) start from rank 0's too.
    c10::NoGradGuard no_grad;
    for (const detail::ModuleTensor& t : s.model->module_tensors()) {
      if (t.kind != "buffer" || t.tensor.numel() == 0) continue;
      at::Tensor c = t.tensor.contiguous();
      comm->broadcast(c, 0).wait();
      if (!c.is_same(t.tensor)) t.tensor.copy_(c);
    }
  }

  const c10::Device device = s.core->device();
  s.telemetry = std::make_unique<detail::Telemetry>(
      config.logging().wall_clock_breakdown && device.type() != c10::kCPU, device);
  monitor::RunFacts facts;
  facts.rank = comm->rank();
  facts.world_size = comm->world_size();
  facts.device = device;
  facts.dtype = p.dtype;
  facts.trainable_params = s.core->layout().param_numel();
  facts.train_batch_size = config.batch().train_batch_size;
  facts.report_loss_scale = config.fp16().enabled;
  // Rank 0 creates the monitors' directories; every rank learns if that failed.
  const std::string monitor_error = ckpt::capture_error(
      [&] { s.reporter = std::make_unique<monitor::Reporter>(config.logging(), options.progress, facts); });
  ckpt::agree(*comm, device, monitor_error, "setting up csv_monitor/tensorboard");
  s.telemetry->rebase(channels.stats());
  return Engine(std::move(impl));
}

}  // namespace

Engine initialize(std::shared_ptr<torch::nn::Module> model, const Config& config, InitOptions options) {
  TORCH_CHECK(model, "zerotrain::initialize: the model is null");
  Prepared p = prepare(config, options);
  const ZeroConfig& z = p.config.zero();
  if (options.sharded_init) check_sharded_init(*options.sharded_init, *p.comm, z.stage, p.dtype);
  // DeepSpeed's module.half() / bfloat16(); parameters sharded at creation
  // have the dtype already, and are not read.
  if (p.dtype != at::kFloat) model->to(p.dtype);

  detail::ModuleUnits units = detail::cut_into_units(*model, options.wrap_policy, z.reduce_bucket_size);
  if (options.sharded_init) take_pieces(*options.sharded_init, *model, units.spec);
  const bool recompute_all = options.recompute_units;
  auto attach = [&units, recompute_all](const std::shared_ptr<zero::ShardedModel>& core,
                                        const checkpointing::CheckpointOptions& checkpointing) {
    detail::attach_units(units, core, checkpointing, recompute_all);
  };
  return build(std::move(p), std::move(units.spec), detail::access_module(model), options, attach);
}

Engine initialize(ModelDescription model, const Config& config, InitOptions options) {
  TORCH_CHECK(!options.sharded_init, "zerotrain::initialize: InitOptions::sharded_init is for LibTorch modules "
              "built in a zerotrain::ShardedInit scope; a described model has its parameters already");
  TORCH_CHECK(!options.recompute_units, "zerotrain::initialize: InitOptions::recompute_units needs "
              "zerotrain::Unit layers; a described model's front end checkpoints its own layers");
  TORCH_CHECK(model.train && model.buffers, "zerotrain::initialize: a model description needs its train and "
              "buffers functions");
  Prepared p = prepare(config, options);
  detail::ModuleUnits units =
      detail::cut_into_units(model.modules, options.wrap_policy, p.config.zero().reduce_bucket_size);
  auto access = detail::access_description(std::move(model));
  return build(std::move(p), std::move(units.spec), std::move(access), options, nullptr);
}

}  // namespace zerotrain
