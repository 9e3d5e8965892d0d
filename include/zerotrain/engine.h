#pragma once
// The training engine: ZeRO stages 0-2 over a LibTorch module. See README.md,
// "Training loop in C++", and docs/architecture.md, "The engine" and "Units".
//
//   auto engine = zerotrain::initialize(model, zerotrain::Config::from_file("ds.json"));
//   for (auto& batch : loader) {          // one micro-batch per iteration
//     at::Tensor loss = loss_fn(model->forward(batch.x), batch.y);
//     engine.backward(loss);              // loss scale and 1/GAS applied here
//     engine.step();                      // updates only at the accumulation boundary
//   }

#include <zerotrain/checkpoint.h>
#include <zerotrain/comm.h>
#include <zerotrain/activation_checkpointing.h>
#include <zerotrain/config.h>
#include <zerotrain/model_description.h>
#include <zerotrain/monitor.h>
#include <zerotrain/sharded_init.h>
#include <zerotrain/units.h>

#include <ATen/core/Tensor.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace zerotrain {

namespace detail {
class EngineImpl;  // src/engine/engine_impl.h
}

/// Parameters that share optimizer settings, as torch optimizers' param groups.
/// Unset values come from the config's optimizer section.
struct ParamGroup {
  std::vector<at::Tensor> params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};

/// One event of a unit's life or of the gradient pipeline, for tests and
/// tracing tools. `unit` indexes Engine::units(); `param` the trainable
/// parameters in registration order.
struct EngineEvent {
  enum class Kind {
    kBeforeForward,    // a unit's forward begins (`unit`)
    kAfterForward,     // a unit's forward ended (`unit`)
    kBeforeBackward,   // autograd reached a unit's outputs (`unit`)
    kGradReady,        // autograd accumulated a parameter's gradient (`unit`, `param`)
    kAfterBackward,    // the last of a unit's parameters has its gradient (`unit`)
    kReduceLaunched,   // a unit's reduction was issued (`unit`)
    kReduceRetired,    // a unit's reduction was waited for and its result stored (`unit`)
    kBackwardDone,     // autograd returned; units without gradients are flushed after this
    kGatherLaunched,   // a unit's parameter all-gather was issued (`unit`)
    kGatherDone,       // it completed and the unit's parameters may be read (`unit`)
    kReleased,         // stage 3: a unit's full parameters were freed (`unit`)
  };
  Kind kind;
  int unit = -1;
  int param = -1;
  /// Reductions issued and not yet retired when the event happened (reduction events).
  int in_flight = 0;
};
const char* to_string(EngineEvent::Kind kind);

struct InitOptions {
  /// Empty: one group of every parameter that requires grad, in registration order.
  /// Otherwise every such parameter must be in exactly one group.
  std::vector<ParamGroup> param_groups;
  /// Empty: init_distributed() with the config's `comm` section.
  std::shared_ptr<Communicator> communicator;
  /// Called on the thread that runs each event (autograd's, for hooks).
  std::function<void(const EngineEvent&)> observer;
  /// Sequence length, total steps and FLOPs for the progress reports.
  ProgressOptions progress;
  /// Which module subtrees become units (include/zerotrain/units.h); subtrees
  /// marked with zerotrain::Unit are units under every policy.
  WrapPolicy wrap_policy;
  /// Stage 3: the pieces of a model built in a zerotrain::ShardedInit scope
  /// (include/zerotrain/sharded_init.h) on the same communicator.
  std::shared_ptr<ShardedParameters> sharded_init;
  /// Activation checkpointing without touching the model: every zerotrain::Unit
  /// layer's forward is recomputed in backward, with the config's
  /// activation_checkpointing options (include/zerotrain/activation_checkpointing.h).
  bool recompute_units = false;
  /// Where initialize()'s warnings go (config keys without effect, ...), on
  /// rank 0; empty: standard error. The Python package logs them.
  std::function<void(const std::string&)> warn;
};

/// The order in which the engine saw units run (unit indices of Engine::units()).
struct ExecutionTrace {
  /// The first training forward (under grad mode): units by their first entry.
  /// Only units with triggers (zerotrain::Unit) report their forward.
  std::vector<int> forward;
  /// The first backward: units in the order their backward finished.
  std::vector<int> backward;
  /// Later training forwards whose order differed from the first.
  int64_t forward_mismatches = 0;
};

enum class Phase { kForward = 0, kBackward, kReduce, kStep, kAllGather };
inline constexpr int kNumPhases = 5;
const char* to_string(Phase phase);

/// Cumulative wall time per phase. The engine times backward, reduce (the
/// part of reduction not hidden behind backward), step and all-gather itself;
/// forward is timed by the caller through Engine::time(Phase::kForward). With
/// `wall_clock_breakdown` on a GPU, each phase ends with a device synchronize.
struct PhaseTimes {
  std::array<double, kNumPhases> total_ms{};
  std::array<int64_t, kNumPhases> count{};
  double ms(Phase p) const { return total_ms[static_cast<size_t>(p)]; }
  std::string to_string() const;
};

/// This rank's bytes by role. Parameters and gradients are in the model dtype;
/// master weights and optimizer states in fp32.
struct MemoryReport {
  int64_t parameters = 0;             // flat buffers (with padding) and frozen parameters
  int64_t gradients = 0;              // full flat gradients (stages 0/1) or the shard (stage 2)
  int64_t master_weights = 0;         // 0 when an fp32 stage-0 model updates in place
  int64_t optimizer_states = 0;       // Adam/LAMB moments
  int64_t communication_buffers = 0;  // buckets, all-gather staging
  int64_t offload_buffers = 0;        // offload: host copy of the gradients, parameter staging
  /// Of the total, what lives in host memory because of offload (master
  /// weights, moments and the buffers above; stage 3's shard with offload_param).
  int64_t host = 0;
  // Stage 3's parameters, counted in `parameters` above:
  int64_t parameter_shard = 0;           // this rank's shard of every unit; 0 below stage 3
  int64_t gathered_parameters = 0;       // the units' full flat buffers held now (every unit below stage 3)
  int64_t peak_gathered_parameters = 0;  // the most of those held at once in the last optimizer step
  int64_t total() const {
    return parameters + gradients + master_weights + optimizer_states + communication_buffers + offload_buffers;
  }
  std::string to_string() const;
};

class Engine;
/// Times a phase while alive; see Engine::time.
class PhaseTimer {
 public:
  PhaseTimer(PhaseTimer&&) noexcept;
  PhaseTimer& operator=(PhaseTimer&&) = delete;
  ~PhaseTimer();

 private:
  friend class Engine;
  PhaseTimer(detail::EngineImpl* state, Phase phase);
  detail::EngineImpl* state_;
  Phase phase_;
  std::chrono::steady_clock::time_point start_;
};

/// While alive, backward() does not reduce gradients (stages 0 and 1), so they
/// accumulate locally; step() is an error inside it, as in DeepSpeed.
class NoSyncGuard {
 public:
  NoSyncGuard(NoSyncGuard&&) noexcept;
  NoSyncGuard& operator=(NoSyncGuard&&) = delete;
  ~NoSyncGuard();

 private:
  friend class Engine;
  explicit NoSyncGuard(detail::EngineImpl* state);
  detail::EngineImpl* state_;
};

/// Full parameters while alive, at any stage (DeepSpeed's
/// zero.GatheredParameters): at stage 3 the units holding them are gathered
/// on construction, stay gathered through any forward run inside the scope
/// (evaluation), and are released again when the scope ends; scopes may nest.
/// Without a modifier rank, changes to the parameters at stage 3 are lost
/// when the scope ends (the shards are kept). With a modifier
/// rank, what that rank wrote into the parameters is broadcast to every rank
/// and becomes the new parameters and fp32 master weights. Collective: every
/// rank creates and ends it, between steps. End it with close() to see a
/// failure as an exception; the destructor closes it too and prints one.
class GatheredParameters {
 public:
  GatheredParameters(GatheredParameters&&) noexcept;
  GatheredParameters& operator=(GatheredParameters&&) = delete;
  ~GatheredParameters();
  void close();

 private:
  friend class Engine;
  GatheredParameters(detail::EngineImpl* state, std::vector<int> units, std::optional<int> modifier_rank);
  detail::EngineImpl* state_;
  std::vector<int> units_;  // the units the parameters are in, held gathered while the scope lives
  std::optional<int> modifier_rank_;
};

class Engine {
 public:
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;
  ~Engine();

  /// Scales `loss` by the loss scale and 1/gradient_accumulation_steps and runs
  /// backward; gradients are reduced as the stage says. Returns loss / GAS.
  at::Tensor backward(const at::Tensor& loss);
  /// Call after every micro-batch: counts it, and at the accumulation boundary
  /// checks overflow, clips, updates, gathers parameters and steps the schedule.
  void step();
  bool is_gradient_accumulation_boundary() const;
  /// Zeroes the gradients the engine keeps (the model's .grad views stay).
  void zero_grad();
  NoSyncGuard no_sync();
  void train(bool on = true);
  void eval() { train(false); }

  std::shared_ptr<torch::nn::Module> module() const;
  const Config& config() const;
  int64_t global_steps() const;
  int64_t micro_steps() const;
  /// Boundaries whose update was skipped for an inf or nan gradient. With a
  /// static loss scale the last step's decision is read from the device when
  /// this (or was_step_applied(), lr()) asks for it (docs/architecture.md,
  /// "The step").
  int64_t skipped_steps() const;
  /// Whether the last step() call updated the parameters.
  bool was_step_applied() const;
  /// The learning rate of each parameter group for the next update.
  std::vector<double> lr() const;
  double loss_scale() const;
  /// The unscaled global L2 norm of the last boundary's gradients (before
  /// clipping); -1 when it was inf or nan; empty before the first boundary.
  /// On a GPU the first call after a step waits for that step's norm.
  std::optional<double> global_grad_norm() const;
  int rank() const;
  int world_size() const;
  Communicator& communicator() const;

  /// The units the wrap policy made, in unit order.
  std::vector<UnitInfo> units() const;
  /// The core's forward triggers, for a front end that calls them itself (a
  /// described model: Python's module hooks). Unit indices are units()'s.
  std::shared_ptr<UnitTriggers> unit_triggers() const;
  ExecutionTrace execution_trace() const;
  /// Units in the order their gradients are reduced (Note [Launch units in
  /// one order on every rank] in src/zero/grad_reducer.h).
  std::vector<int> reduce_order() const;

  /// Collective, between steps: the named trainable parameters (all when
  /// `names` is empty) hold their full values while the returned scope lives.
  GatheredParameters gathered_parameters(const std::vector<std::string>& names = {},
                                         std::optional<int> modifier_rank = std::nullopt);

  /// Collective (every rank calls it, between steps): a trainable parameter's
  /// full fp32 master value by name, shaped like the parameter, as
  /// DeepSpeed's safe_get_full_fp32_param; on CPU.
  at::Tensor full_fp32_param(const std::string& name);
  /// Collective, at an accumulation boundary (after the last micro-batch's
  /// backward, before step()): a parameter's full gradient in fp32, averaged
  /// over the ranks and the micro-batches, with the loss scale divided out and
  /// before clipping, as DeepSpeed's safe_get_full_grad; on CPU.
  at::Tensor full_grad(const std::string& name);
  /// Collective: "exp_avg" or "exp_avg_sq" of a parameter, as
  /// safe_get_full_optimizer_state.
  at::Tensor full_optimizer_state(const std::string& name, const std::string& state);

  MemoryReport memory_report() const;
  /// activation_checkpointing.profile: time in checkpointed forwards and their
  /// recomputes (recomputed layers); nullopt when the profile is off.
  std::optional<checkpointing::CheckpointProfile::Totals> checkpoint_profile() const;
  /// Collectives of the last optimizer step: everything this engine issued
  /// from the end of the previous boundary step to the end of the last one.
  CommStats comm_report() const;
  PhaseTimes timers() const;
  /// Rank 0 writes `events` to the enabled monitors (csv_monitor, tensorboard);
  /// other ranks ignore them, as in DeepSpeed. For the program's own scalars,
  /// e.g. a validation loss.
  void write_events(const std::vector<MonitorEvent>& events);
  /// Rank 0 prints `line` on stdout, above the progress bar when one is drawn
  /// (other ranks print nothing): for the program's own messages.
  void print_line(const std::string& line);
  /// Times `phase` (usually kForward) until the returned object is destroyed.
  PhaseTimer time(Phase phase);

  /// Collective: every rank calls it, between optimizer steps (not inside an
  /// accumulation window). Writes `<dir>/<tag>/` (tag default
  /// "global_step<N>") atomically, then points `<dir>/latest` at it. Returns
  /// the tag directory. See docs/checkpoints.md.
  std::string save_checkpoint(const std::string& dir, const std::string& tag = "",
                              const SaveCheckpointOptions& options = {});
  /// Collective. Loads `tag` (default: the one `<dir>/latest` names) saved at
  /// any world size and ZeRO stage, re-sharding as needed. Every file is
  /// verified before anything changes. Returns nullopt, with a warning, when
  /// no tag is given and `<dir>/latest` does not exist (as DeepSpeed does).
  std::optional<LoadedCheckpoint> load_checkpoint(const std::string& dir, const std::string& tag = "",
                                                  const LoadCheckpointOptions& options = {});
  /// Collective. Rank 0 writes the full model (parameters and buffers, in the
  /// model dtype) to `<dir>/<filename>`: safetensors when the name ends in
  /// ".safetensors", otherwise torch.save's format. Returns the path.
  std::string save_16bit_model(const std::string& dir, const std::string& filename = "pytorch_model.bin");

  /// Internal: use initialize().
  explicit Engine(std::unique_ptr<detail::EngineImpl> state);

 private:
  std::unique_ptr<detail::EngineImpl> state_;
};

/// The settings of a valid config that this version's engine does not run
/// (offload to NVMe and its keys, a partial offload ratio, partitioned or
/// contiguous activation checkpoints, the stage-3 keys for DeepSpeed's other
/// fetch strategies, no optimizer section), each with its JSON path and what
/// to do instead.
std::vector<ConfigProblem> unsupported_settings(const Config& config);
/// Throws unsupported_settings() as one ConfigError, as initialize(),
/// `zerotrain config check` and the Python package's load_config do.
void require_supported(const Config& config);

/// Builds the engine: resolves the config against the communicator's world
/// size, casts the model to the configured dtype, cuts the trainable
/// parameters into units by options.wrap_policy, moves each unit into a flat
/// buffer of its own (broadcast from rank 0), attaches the zerotrain::Unit
/// wrappers and registers the gradient hooks.
Engine initialize(std::shared_ptr<torch::nn::Module> model, const Config& config,
                  InitOptions options = {});
/// The same for a model described by its module tree (the Python package's
/// nn.Module), already in the config's dtype. Every unit, the root unit too,
/// has triggers: the caller hooks each unit's module (UnitInfo::module_path)
/// to unit_triggers() and attach_before_backward(). Not available here:
/// sharded_init and recompute_units.
Engine initialize(ModelDescription model, const Config& config, InitOptions options = {});

}  // namespace zerotrain
