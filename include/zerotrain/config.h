#pragma once
// zerotrain::Config: a DeepSpeed-style JSON config turned, once, into typed and
// immutable sections. Nothing downstream of this header reads raw JSON.
//
// Semantics follow DeepSpeed 0.19 (batch-triple resolution, defaults, "Adam"
// meaning AdamW unless adam_w_mode is false). Where zerotrain is stricter
// (unknown keys, contradictory settings, unsupported features, duplicate keys),
// the differences are listed in docs/config.md.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace zerotrain {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One problem found in a config. `path` is a JSON path such as
/// `zero_optimization.offload_optimizer.device` or `optimizer.params.betas[1]`;
/// the empty path means the document itself.
struct ConfigProblem {
  std::string path;
  std::string message;
};

/// Thrown when a config is invalid. It carries every problem found, not just
/// the first; what() lists them one per line as `SOURCE: PATH: MESSAGE`.
/// Derives from std::invalid_argument so that bindings map it to ValueError.
class ConfigError : public std::invalid_argument {
 public:
  ConfigError(std::string source, std::vector<ConfigProblem> problems);
  /// The file name, or "<string>" / "<json>" for in-memory configs.
  const std::string& source() const noexcept { return source_; }
  const std::vector<ConfigProblem>& problems() const noexcept { return problems_; }

 private:
  std::string source_;
  std::vector<ConfigProblem> problems_;
};

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

enum class DType { kFloat32, kFloat16, kBFloat16 };
/// "fp32", "fp16" or "bf16".
const char* to_string(DType dtype) noexcept;

/// The batch triple after DeepSpeed's resolution against the data-parallel
/// world size: train_batch_size == micro_batch_per_gpu * gradient_accumulation_steps * world_size.
struct BatchConfig {
  int64_t train_batch_size = 0;
  int64_t micro_batch_per_gpu = 0;
  int64_t gradient_accumulation_steps = 0;
  int64_t world_size = 1;
};

enum class OptimizerKind { kAdam, kAdamW, kLamb };
const char* to_string(OptimizerKind kind) noexcept;

/// How Adam applies weight decay: added to the gradient (L2, torch.optim.Adam)
/// or decoupled from it (AdamW).
enum class WeightDecayMode { kL2, kDecoupled };

/// LAMB-only parameters (DeepSpeed FusedLamb).
struct LambOptions {
  double max_coeff = 10.0;
  double min_coeff = 0.01;
  bool eps_inside_sqrt = false;
};

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool bias_correction = true;
  /// Resolved from the type and `adam_w_mode`: "Adam" is decoupled unless
  /// adam_w_mode is false; "AdamW" is always decoupled. Unused by LAMB.
  WeightDecayMode weight_decay_mode = WeightDecayMode::kDecoupled;
  /// `torch_adam`: use LibTorch's own (unfused) Adam/AdamW implementation.
  bool torch_adam = false;
  /// Meaningful when kind == kLamb.
  LambOptions lamb;
};

enum class WarmupType { kLog, kLinear };

/// Every scheduler carries DeepSpeed's `last_batch_iteration` (default -1).
struct WarmupLRParams {
  double warmup_min_lr = 0.0;
  /// Resolved to the optimizer's lr when the config has an optimizer section;
  /// otherwise empty, meaning "the lr of the optimizer the program supplies".
  std::optional<double> warmup_max_lr;
  int64_t warmup_num_steps = 1000;
  WarmupType warmup_type = WarmupType::kLog;
  int64_t last_batch_iteration = -1;
};

struct WarmupDecayLRParams {
  int64_t total_num_steps = 0;  // required
  double warmup_min_lr = 0.0;
  double warmup_max_lr = 0.001;  // DeepSpeed's WarmupDecayLR default (unlike WarmupLR)
  int64_t warmup_num_steps = 1000;
  WarmupType warmup_type = WarmupType::kLog;
  int64_t last_batch_iteration = -1;
};

struct WarmupCosineLRParams {
  int64_t total_num_steps = 0;  // required
  double warmup_min_ratio = 0.0;
  int64_t warmup_num_steps = 1000;
  double cos_min_ratio = 1e-4;
  WarmupType warmup_type = WarmupType::kLog;
  int64_t last_batch_iteration = -1;
};

struct OneCycleParams {
  double cycle_min_lr = 0.0;  // required
  double cycle_max_lr = 0.0;  // required
  double decay_lr_rate = 0.0;
  int64_t cycle_first_step_size = 2000;
  int64_t cycle_second_step_size = 2000;  // resolved: defaults to cycle_first_step_size
  int64_t cycle_first_stair_count = 0;
  int64_t cycle_second_stair_count = 0;  // resolved: defaults to cycle_first_stair_count
  int64_t decay_step_size = 0;
  bool cycle_momentum = true;
  double cycle_min_mom = 0.8;
  double cycle_max_mom = 0.9;
  double decay_mom_rate = 0.0;
  int64_t last_batch_iteration = -1;
};

struct LRRangeTestParams {
  double min_lr = 1e-3;     // lr_range_test_min_lr
  int64_t step_size = 2000;  // lr_range_test_step_size
  double step_rate = 1.0;    // lr_range_test_step_rate
  bool staircase = false;    // lr_range_test_staircase
  int64_t last_batch_iteration = -1;
};

using SchedulerParams = std::variant<WarmupLRParams, WarmupDecayLRParams, WarmupCosineLRParams,
                                     OneCycleParams, LRRangeTestParams>;
/// DeepSpeed's type name: "WarmupLR", "WarmupDecayLR", ...
const char* scheduler_type_name(const SchedulerParams& params) noexcept;

/// What to do when dynamic loss scaling would go below min_loss_scale.
enum class MinLossScaleAction {
  kRaise,  // DeepSpeed's behaviour: stop with an error naming the step and scale.
  kSkip,   // keep skipping steps at the minimum scale, logging a warning each time.
};

struct Fp16Config {
  bool enabled = false;
  /// 0 means dynamic loss scaling; > 0 is a static scale.
  double loss_scale = 0.0;
  int64_t initial_scale_power = 16;
  int64_t loss_scale_window = 1000;
  int64_t hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;
  /// zerotrain extension (`fp16.min_loss_scale_action`: "raise" | "skip").
  MinLossScaleAction min_loss_scale_action = MinLossScaleAction::kRaise;

  bool dynamic_loss_scale() const noexcept { return loss_scale == 0.0; }
};

struct Bf16Config {
  bool enabled = false;
  /// Skip steps whose gradients contain inf/nan (DeepSpeed's default since 0.19.3).
  bool check_grad_overflow = true;
};

/// Gradient post-processing and the dtype gradients travel in.
struct GradientConfig {
  /// Max global L2 norm; 0 disables clipping. DeepSpeed's default is 1.0.
  double clipping = 1.0;
  double predivide_factor = 1.0;
  bool prescale = false;
  /// Resolved: DeepSpeed's None follows fp16, then bf16, then fp32.
  DType communication_dtype = DType::kFloat32;
};

enum class OffloadDevice { kNone, kCpu, kNvme };
const char* to_string(OffloadDevice device) noexcept;

struct OffloadOptimizerConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::string nvme_path;
  int64_t buffer_count = 4;
  bool pin_memory = true;
  bool pipeline_read = false;
  bool pipeline_write = false;
  bool fast_init = false;
  double ratio = 1.0;

  bool enabled() const noexcept { return device != OffloadDevice::kNone; }
};

struct OffloadParamConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::string nvme_path;
  int64_t buffer_count = 5;
  int64_t buffer_size = 100'000'000;
  int64_t max_in_cpu = 1'000'000'000;
  bool pin_memory = true;

  bool enabled() const noexcept { return device != OffloadDevice::kNone; }
};

/// What a ZeRO stage shards. The stage is a value, not a class: the engine has
/// one code path and asks this policy what to partition.
struct ShardingPolicy {
  bool optimizer_states = false;  // stage >= 1: fp32 master weights and moments
  bool gradients = false;         // stage >= 2
  bool parameters = false;        // stage >= 3
  static ShardingPolicy for_stage(int stage) noexcept;
};

/// The stage3_* keys; each is also accepted under its short alias
/// (`stage3_prefetch_bucket_size` or `prefetch_bucket_size`). Sizes count elements.
struct Stage3Config {
  int64_t prefetch_bucket_size = 50'000'000;
  int64_t param_persistence_threshold = 100'000;
  int64_t model_persistence_threshold = INT64_MAX;
  int64_t max_live_parameters = 1'000'000'000;
  int64_t max_reuse_distance = 1'000'000'000;
  bool gather_16bit_weights_on_model_save = false;
  int64_t module_granularity_threshold = 0;
  bool use_all_reduce_for_fetch_params = false;
  bool allgather_sequential = false;
};

struct ZeroConfig {
  int stage = 0;
  /// Only true at stages 2 and 3 (false is an error there, a warning below).
  bool contiguous_gradients = true;
  bool reduce_scatter = true;
  int64_t reduce_bucket_size = 500'000'000;  // elements
  int64_t allgather_bucket_size = 500'000'000;  // elements
  /// Resolved: DeepSpeed's None means "on for stage 3".
  bool overlap_comm = false;
  bool allgather_partitions = true;
  /// Loading a checkpoint with optimizer states: true restores the fp32 master
  /// weights from the checkpoint's fp32 copy; false rebuilds them from the
  /// saved model-dtype weights (as DeepSpeed does).
  bool load_from_fp32_weights = true;
  bool ignore_unused_parameters = true;
  /// Stage 3's optimizer-step tile (elements); a warning at stages 0-2.
  int64_t sub_group_size = 1'000'000'000;
  OffloadOptimizerConfig offload_optimizer;
  OffloadParamConfig offload_param;
  Stage3Config stage3;

  ShardingPolicy sharding() const noexcept { return ShardingPolicy::for_stage(stage); }
};

struct ActivationCheckpointingConfig {
  bool partition_activations = false;
  bool cpu_checkpointing = false;
  bool contiguous_memory_optimization = false;
  std::optional<int64_t> number_checkpoints;
  bool synchronize_checkpoint_boundary = false;
  bool profile = false;
};

/// `tensorboard` and `csv_monitor`.
struct MonitorConfig {
  bool enabled = false;
  std::string output_path;
  std::string job_name = "DeepSpeedJobName";
};

struct LoggingConfig {
  /// Empty: no periodic progress line (DeepSpeed's default since 0.15.2).
  std::optional<int64_t> steps_per_print;
  bool wall_clock_breakdown = false;
  MonitorConfig tensorboard;
  MonitorConfig csv_monitor;
};

enum class TagValidation { kWarn, kIgnore, kFail };

struct CheckpointConfig {
  TagValidation tag_validation = TagValidation::kWarn;
};

/// zerotrain extension: `"comm": {"timeout_s": 600, "check_collectives": false}`,
/// for the communication layer (src/comm, next on the roadmap).
struct CommConfig {
  double timeout_s = 600.0;  // DeepSpeed's default of 10 minutes
  /// Debug mode: before each collective, check that all ranks issue the same
  /// operation, dtype, size and sequence number.
  bool check_collectives = false;
};

// ---------------------------------------------------------------------------
// Resolution inputs
// ---------------------------------------------------------------------------

/// Values that replace `"auto"`, as the Hugging Face Trainer fills them from its
/// training arguments. An `"auto"` whose value is not given stays unresolved:
/// the config still loads, unresolved_auto() lists it, and an engine refuses
/// to start until it is resolved.
struct AutoValues {
  std::optional<int64_t> micro_batch_per_gpu;          // per_device_train_batch_size
  std::optional<int64_t> gradient_accumulation_steps;  //
  std::optional<double> lr;
  std::optional<std::array<double, 2>> betas;
  std::optional<double> eps;
  std::optional<double> weight_decay;
  std::optional<double> gradient_clipping;  // max_grad_norm
  std::optional<int64_t> warmup_steps;
  std::optional<int64_t> total_steps;  // num_training_steps
  std::optional<bool> fp16;
  std::optional<bool> bf16;
  /// The model's hidden size H: reduce_bucket_size = H*H,
  /// stage3_prefetch_bucket_size = 0.9*H*H, stage3_param_persistence_threshold = 10*H.
  std::optional<int64_t> hidden_size;
};

struct ResolveOptions {
  /// The data-parallel world size the batch triple is resolved against.
  int64_t world_size = 1;
  AutoValues auto_values;
};

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/// An immutable, validated config. Copies share one resolved state.
class Config {
 public:
  /// Reads a JSON file; `//` and `/* */` comments are allowed, duplicate keys are not.
  static Config from_file(const std::string& path, const ResolveOptions& options = {});
  static Config from_string(std::string_view text, const ResolveOptions& options = {},
                            std::string source = "<string>");
  static Config from_json(const nlohmann::json& json, const ResolveOptions& options = {});

  /// The same document resolved again (another world size, more auto values).
  Config resolved(const ResolveOptions& options) const;

  /// Throws ConfigError if unresolved_auto() is not empty: an engine calls this before starting.
  void require_resolved() const;
  /// JSON paths whose value is still "auto".
  const std::vector<std::string>& unresolved_auto() const noexcept;
  /// Non-fatal notes, e.g. deprecated keys that were translated.
  const std::vector<ConfigProblem>& warnings() const noexcept;
  const std::string& source() const noexcept;
  const ResolveOptions& resolve_options() const noexcept;

  /// Throws ConfigError if a batch value is still "auto".
  const BatchConfig& batch() const;
  /// Empty when the config has no `optimizer` section (the program supplies one).
  const std::optional<OptimizerConfig>& optimizer() const noexcept;
  /// Empty when the config has no `scheduler` section.
  const std::optional<SchedulerParams>& scheduler() const noexcept;
  const Fp16Config& fp16() const noexcept;
  const Bf16Config& bf16() const noexcept;
  /// fp16, bf16 or fp32: the dtype of model parameters and gradients.
  DType model_dtype() const noexcept;
  const GradientConfig& gradients() const noexcept;
  const ZeroConfig& zero() const noexcept;
  const ActivationCheckpointingConfig& activation_checkpointing() const noexcept;
  const LoggingConfig& logging() const noexcept;
  const CheckpointConfig& checkpoint() const noexcept;
  const CommConfig& comm() const noexcept;
  bool zero_allow_untested_optimizer() const noexcept;
  bool zero_force_ds_cpu_optimizer() const noexcept;

  /// The fully resolved config: every section with every default filled in,
  /// DeepSpeed key names, and "auto" only where a value is still unresolved.
  /// Parsing it again gives the same config.
  nlohmann::json to_json() const;
  std::string to_json_string(int indent = 2) const;

  struct State;  // defined in src/config/state.h

 private:
  explicit Config(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

}  // namespace zerotrain
