#pragma once
// Internal: the parsed sections of a config and the parser of each section.
// Each parse_* function reads its keys from the top-level reader and records
// problems in the reader's context; check_consistency() then rejects
// contradictory combinations across sections.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/reader.h"
#include "zerotrain/config.h"

namespace zerotrain::config_detail {

struct Sections {
  BatchConfig batch;
  bool batch_resolved = false;  // false while a batch value is an unresolved "auto"
  // The batch values as given, kept to write an unresolved document back out.
  std::optional<int64_t> given_train_batch_size, given_micro_batch, given_gradient_accumulation_steps;
  std::optional<OptimizerConfig> optimizer;
  std::optional<SchedulerParams> scheduler;
  Fp16Config fp16;
  Bf16Config bf16;
  GradientConfig gradients;
  bool communication_dtype_given = false;  // false: follows the model dtype (DeepSpeed's None)
  std::string bf16_key = "bf16";  // or the legacy "bfloat16", for messages
  ZeroConfig zero;
  ActivationCheckpointingConfig activation_checkpointing;
  LoggingConfig logging;
  CheckpointConfig checkpoint;
  CommConfig comm;
  bool zero_allow_untested_optimizer = false;
  bool zero_force_ds_cpu_optimizer = true;

  DType model_dtype() const {
    return fp16.enabled ? DType::kFloat16 : bf16.enabled ? DType::kBFloat16 : DType::kFloat32;
  }
};

// In the order Config parses them: later sections read earlier results
// (the scheduler reads the optimizer's lr, gradients read the precision).
void parse_batch(ObjectReader& root, Sections& out);
void parse_optimizer(ObjectReader& root, Sections& out);
void parse_scheduler(ObjectReader& root, Sections& out);
void parse_precision(ObjectReader& root, Sections& out);
void parse_gradients(ObjectReader& root, Sections& out);
void parse_zero(ObjectReader& root, Sections& out);
void parse_misc(ObjectReader& root, Sections& out);
void parse_unsupported(ObjectReader& root);
void check_consistency(const Sections& sections, ParseContext& ctx);

/// The resolved document; unresolved "auto" paths are written back as "auto".
nlohmann::json sections_to_json(const Sections& sections, const std::vector<std::string>& unresolved_auto);

}  // namespace zerotrain::config_detail
