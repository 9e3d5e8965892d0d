// Every rejection path of the config parser: each case is a document, the
// JSON path the problem must be reported at, and text the message must hold.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "zerotrain/config.h"

namespace zerotrain {
namespace {

struct ErrorCase {
  const char* name;
  const char* json;
  int64_t world_size;
  const char* path;
  const char* message;
};

// The error a rejected document raises; a failure if it is accepted.
ConfigError rejection(const std::string& text, const ResolveOptions& options = {},
                      const std::string& source = "<string>") {
  try {
    Config::from_string(text, options, source);
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << text;
  return ConfigError(source, {});
}

ConfigError file_rejection(const std::string& path) {
  try {
    Config::from_file(path);
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << path;
  return ConfigError(path, {});
}

// gtest prints the case's name in failures instead of its bytes.
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

// A valid base for cases that only care about one section.
#define BATCH "\"train_micro_batch_size_per_gpu\": 2, "

const ErrorCase kCases[] = {
    // Unknown keys, with suggestions.
    {"TopLevelTypoSuggests", "{" BATCH "\"zero_optimisation\": {\"stage\": 2}}", 1, "zero_optimisation",
     "did you mean \"zero_optimization\"?"},
    {"NestedTypoSuggests", "{" BATCH "\"zero_optimization\": {\"overlap_com\": true}}", 1,
     "zero_optimization.overlap_com", "did you mean \"overlap_comm\"?"},
    {"BatchTypoSuggests", "{\"train_batch_sze\": 8, \"train_micro_batch_size_per_gpu\": 8}", 1, "train_batch_sze",
     "did you mean \"train_batch_size\"?"},
    {"MisplacedFp16KeyUnderBf16", "{" BATCH "\"bf16\": {\"enabled\": true, \"loss_scale\": 0}}", 1,
     "bf16.loss_scale", "belongs in \"fp16\""},
    {"UnknownKeyWithoutSuggestion", "{" BATCH "\"quux\": 1}", 1, "quux", "unknown key"},
    {"UnknownOffloadKey", "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"devise\": \"cpu\"}}}",
     1, "zero_optimization.offload_optimizer.devise", "did you mean \"device\"?"},
    {"UnknownSchedulerParam", "{" BATCH "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_step\": 5}}}",
     1, "scheduler.params.warmup_num_step", "did you mean \"warmup_num_steps\"?"},
    {"PrefixSuggestion", "{\"train_micro_batch_size\": 2}", 1, "train_micro_batch_size",
     "did you mean \"train_micro_batch_size_per_gpu\"?"},

    // Types and ranges.
    {"BoolGivenString", "{" BATCH "\"fp16\": {\"enabled\": \"yes\"}}", 1, "fp16.enabled",
     "expected true or false, got string \"yes\""},
    {"IntGivenString", "{" BATCH "\"zero_optimization\": {\"stage\": \"two\"}}", 1, "zero_optimization.stage",
     "expected an integer, got string \"two\""},
    {"IntGivenFraction", "{" BATCH "\"zero_optimization\": {\"reduce_bucket_size\": 5.5}}", 1,
     "zero_optimization.reduce_bucket_size", "expected an integer, got number 5.5"},
    {"StageAboveThree", "{" BATCH "\"zero_optimization\": {\"stage\": 4}}", 1, "zero_optimization.stage",
     "no stage above 3"},
    {"NegativeBucket", "{" BATCH "\"zero_optimization\": {\"reduce_bucket_size\": -1}}", 1,
     "zero_optimization.reduce_bucket_size", "must be >= 0, got -1"},
    {"SectionNotObject", "{" BATCH "\"zero_optimization\": \"yes\"}", 1, "zero_optimization",
     "expected an object, got string"},
    {"NegativeClipping", "{" BATCH "\"gradient_clipping\": -1}", 1, "gradient_clipping", "must be >= 0"},
    {"ZeroPredivide", "{" BATCH "\"gradient_predivide_factor\": 0}", 1, "gradient_predivide_factor", "must be > 0"},
    {"BadCommDtype", "{" BATCH "\"communication_data_type\": \"fp64\"}", 1, "communication_data_type",
     "expected one of \"fp32\", \"fp16\", \"bf16\""},
    {"BadOffloadDevice", "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"gpu\"}}}",
     1, "zero_optimization.offload_optimizer.device", "expected one of \"none\", \"cpu\", \"nvme\""},
    {"NvmeWithoutPath", "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"nvme\"}}}",
     1, "zero_optimization.offload_optimizer.nvme_path", "required when device is \"nvme\""},
    {"OffloadRatioOutOfRange", "{" BATCH "\"zero_optimization\": {\"stage\": 3, \"offload_optimizer\": {\"ratio\": 1.5}}}",
     1, "zero_optimization.offload_optimizer.ratio", "must be in [0, 1]"},
    {"LossScaleWindowZero", "{" BATCH "\"fp16\": {\"enabled\": true, \"loss_scale_window\": 0}}", 1,
     "fp16.loss_scale_window", "must be > 0"},
    {"HysteresisZero", "{" BATCH "\"fp16\": {\"enabled\": true, \"hysteresis\": 0}}", 1, "fp16.hysteresis",
     "must be >= 1"},
    {"NegativeLossScale", "{" BATCH "\"fp16\": {\"enabled\": true, \"loss_scale\": -2}}", 1, "fp16.loss_scale",
     "must be >= 0"},
    {"BadMinScaleAction", "{" BATCH "\"fp16\": {\"min_loss_scale_action\": \"ignore\"}}", 1,
     "fp16.min_loss_scale_action", "expected one of \"raise\", \"skip\""},
    {"StepsPerPrintZero", "{" BATCH "\"steps_per_print\": 0}", 1, "steps_per_print", "must be > 0"},
    {"CommTimeoutZero", "{" BATCH "\"comm\": {\"timeout_s\": 0}}", 1, "comm.timeout_s", "must be > 0"},
    {"EmptyJobName", "{" BATCH "\"tensorboard\": {\"enabled\": true, \"job_name\": \"\"}}", 1, "tensorboard.job_name",
     "non-empty"},
    {"BadTagValidation", "{" BATCH "\"checkpoint\": {\"tag_validation\": \"Maybe\"}}", 1, "checkpoint.tag_validation",
     "expected one of \"Warn\", \"Ignore\", \"Fail\""},

    // Contradictions.
    {"Fp16AndBf16", "{" BATCH "\"fp16\": {\"enabled\": true}, \"bf16\": {\"enabled\": true}}", 1, "bf16.enabled",
     "fp16 and bf16 cannot both be enabled"},
    {"LambStaticLossScale",
     "{" BATCH "\"optimizer\": {\"type\": \"Lamb\"}, \"fp16\": {\"enabled\": true, \"loss_scale\": 128}}", 1,
     "fp16.loss_scale", "Lamb requires dynamic loss scaling"},
    {"OffloadParamBelowStage3", "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"offload_param\": {\"device\": \"cpu\"}}}",
     1, "zero_optimization.offload_param", "needs ZeRO stage 3, but stage is 2"},
    {"OffloadOptimizerAtStage0", "{" BATCH "\"zero_optimization\": {\"offload_optimizer\": {\"device\": \"cpu\"}}}", 1,
     "zero_optimization.offload_optimizer", "needs ZeRO stage 1, 2 or 3"},
    {"PartialOffloadNeedsStage3", "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"cpu\", \"ratio\": 0.5}}}",
     1, "zero_optimization.offload_optimizer.ratio", "needs ZeRO stage 3"},
    {"PredivideWithReduceScatter", "{" BATCH "\"gradient_predivide_factor\": 2, \"zero_optimization\": {\"stage\": 2}}", 1,
     "gradient_predivide_factor", "must be 1.0 with ZeRO stage 2 and reduce_scatter"},
    {"PrescaleWithReduceScatter", "{" BATCH "\"prescale_gradients\": true, \"zero_optimization\": {\"stage\": 1}}", 1,
     "prescale_gradients", "not supported with ZeRO stage 1 and reduce_scatter"},
    {"PrescaleAndPredivide", "{" BATCH "\"prescale_gradients\": true, \"gradient_predivide_factor\": 4}", 1,
     "gradient_predivide_factor", "set only one"},
    {"OddAllgatherBucket", "{" BATCH "\"zero_optimization\": {\"allgather_bucket_size\": 1001}}", 1,
     "zero_optimization.allgather_bucket_size", "must be even"},
    {"TorchAdamWithOffload",
     "{" BATCH "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"torch_adam\": true}}, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"cpu\"}}}",
     1, "optimizer.params.torch_adam", "contradicts"},
    {"ContiguousCheckpointingNeedsPartition",
     "{" BATCH "\"activation_checkpointing\": {\"contiguous_memory_optimization\": true, \"number_checkpoints\": 4}}", 1,
     "activation_checkpointing.contiguous_memory_optimization", "requires partition_activations"},
    {"ParamDtypeMismatch", "{" BATCH "\"bf16\": {\"enabled\": true}, \"data_types\": {\"param_dtype\": \"fp16\"}}", 1,
     "data_types.param_dtype", "must match the model dtype"},
    {"LambMinAboveMax", "{" BATCH "\"optimizer\": {\"type\": \"Lamb\", \"params\": {\"min_coeff\": 5, \"max_coeff\": 1}}}",
     1, "optimizer.params.min_coeff", "must not exceed max_coeff"},

    // Batch triple, with DeepSpeed's messages.
    {"BatchTripleCannotBeMet", "{\"train_batch_size\": 30, \"train_micro_batch_size_per_gpu\": 4}", 2, "train_batch_size",
     "train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size 30 != 4 * 3 * 2"},
    {"BatchAllThreeInconsistent",
     "{\"train_batch_size\": 16, \"train_micro_batch_size_per_gpu\": 2, \"gradient_accumulation_steps\": 2}", 2,
     "train_batch_size", "16 != 2 * 2 * 2"},
    {"BatchNothingGiven", "{\"gradient_clipping\": 1.0}", 1, "train_batch_size",
     "Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided"},
    {"BatchOnlyGas", "{\"gradient_accumulation_steps\": 4}", 1, "train_batch_size",
     "Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided"},
    {"BatchGasFloorsToZero", "{\"train_batch_size\": 4, \"train_micro_batch_size_per_gpu\": 8}", 1,
     "gradient_accumulation_steps", "Gradient accumulation steps: 0 has to be greater than 0"},
    {"BatchZeroTrainBatch", "{\"train_batch_size\": 0}", 1, "train_batch_size",
     "Train batch size: 0 has to be greater than 0"},
    {"BatchMicroFloorsToZero", "{\"train_batch_size\": 2}", 4, "train_micro_batch_size_per_gpu",
     "Micro batch size per gpu: 0 has to be greater than 0"},
    {"BatchNegativeGas", "{\"train_micro_batch_size_per_gpu\": 2, \"gradient_accumulation_steps\": -1}", 1,
     "gradient_accumulation_steps", "has to be greater than 0"},

    // Features zerotrain does not implement.
    {"PipelineUnsupported", "{" BATCH "\"pipeline\": {\"stages\": 2}}", 1, "pipeline",
     "not supported by zerotrain (pipeline parallelism)"},
    {"AmpUnsupported", "{" BATCH "\"amp\": {\"enabled\": true, \"opt_level\": \"O1\"}}", 1, "amp",
     "not supported by zerotrain"},
    {"WandbUnsupported", "{" BATCH "\"wandb\": {\"enabled\": true}}", 1, "wandb", "not supported by zerotrain"},
    {"ZeroPlusPlusUnsupported", "{" BATCH "\"zero_optimization\": {\"stage\": 3, \"zero_quantized_weights\": true}}", 1,
     "zero_optimization.zero_quantized_weights", "ZeRO++"},
    {"HpzUnsupported", "{" BATCH "\"zero_optimization\": {\"stage\": 3, \"zero_hpz_partition_size\": 8}}", 1,
     "zero_optimization.zero_hpz_partition_size", "not supported by zerotrain"},
    {"MemoryBreakdownUnsupported", "{" BATCH "\"memory_breakdown\": true}", 1, "memory_breakdown",
     "not supported by zerotrain"},
    {"TimersUnsynchronizedUnsupported", "{" BATCH "\"timers\": {\"throughput\": {\"synchronized\": false}}}", 1,
     "timers", "not supported by zerotrain"},
    {"Fp16AutoCastUnsupported", "{" BATCH "\"fp16\": {\"enabled\": true, \"auto_cast\": true}}", 1, "fp16.auto_cast",
     "not supported by zerotrain"},
    {"GradAccumDtypeUnsupported", "{" BATCH "\"data_types\": {\"grad_accum_dtype\": \"fp32\"}}", 1,
     "data_types.grad_accum_dtype", "not supported by zerotrain"},
    {"SequenceParallelUnsupported", "{" BATCH "\"sequence_parallel_size\": 2}", 1, "sequence_parallel_size",
     "not supported by zerotrain"},

    // Optimizer and scheduler sections.
    {"OptimizerTypeMissing", "{" BATCH "\"optimizer\": {\"params\": {}}}", 1, "optimizer.type", "missing"},
    {"OptimizerTypeTypo", "{" BATCH "\"optimizer\": {\"type\": \"Adamm\"}}", 1, "optimizer.type",
     "unknown optimizer type \"Adamm\""},
    {"OptimizerOneBitAdam", "{" BATCH "\"optimizer\": {\"type\": \"OneBitAdam\"}}", 1, "optimizer.type",
     "not supported by zerotrain"},
    {"OptimizerMaxGradNorm", "{" BATCH "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"max_grad_norm\": 1.0}}}", 1,
     "optimizer.params.max_grad_norm", "use the top-level \"gradient_clipping\""},
    {"OptimizerAmsgrad", "{" BATCH "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"amsgrad\": true}}}", 1,
     "optimizer.params.amsgrad", "not supported by zerotrain"},
    {"OptimizerBetasWrongLength", "{" BATCH "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"betas\": [0.9]}}}", 1,
     "optimizer.params.betas", "expected an array of two numbers"},
    {"OptimizerBetaOutOfRange", "{" BATCH "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"betas\": [0.9, 1.5]}}}", 1,
     "optimizer.params.betas[1]", "must be in [0, 1), got 1.5"},
    {"OptimizerNegativeLr", "{" BATCH "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": -0.1}}}", 1,
     "optimizer.params.lr", "must be >= 0"},
    {"OptimizerLambParamOnAdam", "{" BATCH "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"max_coeff\": 5}}}", 1,
     "optimizer.params.max_coeff", "unknown key"},
    {"SchedulerTypeCase", "{" BATCH "\"scheduler\": {\"type\": \"WarmupLr\"}}", 1, "scheduler.type",
     "did you mean \"WarmupLR\"?"},
    {"SchedulerTorchType", "{" BATCH "\"scheduler\": {\"type\": \"StepLR\"}}", 1, "scheduler.type",
     "unknown scheduler type"},
    {"WarmupDecayNeedsTotal", "{" BATCH "\"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {}}}", 1,
     "scheduler.params.total_num_steps", "required"},
    {"OneCycleNeedsMaxLr", "{" BATCH "\"scheduler\": {\"type\": \"OneCycle\", \"params\": {\"cycle_min_lr\": 0.1}}}", 1,
     "scheduler.params.cycle_max_lr", "required"},
    {"BadWarmupType", "{" BATCH "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_type\": \"cosine\"}}}", 1,
     "scheduler.params.warmup_type", "expected one of \"log\", \"linear\""},
    {"PerGroupListRejected",
     "{" BATCH "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_max_lr\": [0.1, 0.2]}}}", 1,
     "scheduler.params.warmup_max_lr", "per-parameter-group lists are not supported"},
    {"WarmupStepsZero", "{" BATCH "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_steps\": 0}}}", 1,
     "scheduler.params.warmup_num_steps", "must be > 0"},

    // "auto", aliases and deprecated spellings.
    {"AutoWhereNotResolvable", "{" BATCH "\"zero_optimization\": {\"stage\": \"auto\"}}", 1, "zero_optimization.stage",
     "\"auto\" is not accepted here"},
    {"AliasAndLongName",
     "{" BATCH "\"zero_optimization\": {\"stage\": 3, \"stage3_prefetch_bucket_size\": 1, \"prefetch_bucket_size\": 2}}",
     1, "zero_optimization.prefetch_bucket_size", "name the same setting"},
    {"DeprecatedAndNewGiven",
     "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"cpu_offload\": true, \"offload_optimizer\": {\"device\": \"cpu\"}}}",
     1, "zero_optimization.cpu_offload", "deprecated spelling of \"offload_optimizer\""},
    {"LegacyBf16AndBf16", "{" BATCH "\"bf16\": {\"enabled\": true}, \"bfloat16\": {\"enabled\": true}}", 1, "bfloat16",
     "legacy name"},
    {"LegacyFormOddAllgatherSize", "{" BATCH "\"zero_optimization\": true, \"allgather_size\": 1001}", 1,
     "allgather_size", "must be even"},
    {"Fp16AndLegacyBfloat16", "{" BATCH "\"fp16\": {\"enabled\": true}, \"bfloat16\": {\"enabled\": true}}", 1,
     "bfloat16.enabled", "fp16 and bf16 cannot both be enabled"},
    {"IntegerBeyond64Bits", "{" BATCH "\"zero_optimization\": {\"sub_group_size\": 18446744073709551615}}", 1,
     "zero_optimization.sub_group_size", "out of the 64-bit integer range"},
    {"NonContiguousGradientsAtStage2", "{" BATCH "\"zero_optimization\": {\"stage\": 2, \"contiguous_gradients\": false}}",
     1, "zero_optimization.contiguous_gradients", "false is not implemented"},
    {"LoadUniversal", "{" BATCH "\"checkpoint\": {\"load_universal\": true}}", 1, "checkpoint.load_universal",
     "load on any world size and stage without it"},
    {"AllgatherSizeWithoutLegacyForm", "{" BATCH "\"allgather_size\": 100, \"zero_optimization\": {\"stage\": 1}}", 1,
     "allgather_size", "only read with the legacy boolean"},

    // The document itself.
    {"DuplicateNestedKey", "{" BATCH "\"zero_optimization\": {\"stage\": 1, \"stage\": 2}}", 1,
     "zero_optimization.stage", "duplicate key \"stage\""},
    {"DuplicateTopLevelKey", "{\"train_micro_batch_size_per_gpu\": 2, \"train_micro_batch_size_per_gpu\": 4}", 1,
     "train_micro_batch_size_per_gpu", "duplicate key"},
    {"DuplicateInsideArrayObject", "{" BATCH "\"x\": [{\"a\": 1}, {\"b\": 1, \"b\": 2}]}", 1, "x[1].b",
     "duplicate key"},
    {"SyntaxError", "{\n  \"train_batch_size\": 8,\n  \"fp16\": {\"enabled\": tru}\n}", 1, "", "invalid JSON"},
    {"TrailingComma", "{\"train_batch_size\": 8,}", 1, "", "invalid JSON"},
    {"TopLevelArray", "[1, 2]", 1, "", "a config must be a JSON object"},
    {"ZeroWorldSize", "{" BATCH "\"gradient_clipping\": 1.0}", 0, "", "world size must be at least 1"},
};

class ConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, RejectedWithPathAndMessage) {
  const ErrorCase& c = GetParam();
  ResolveOptions options;
  options.world_size = c.world_size;
  const ConfigError e = rejection(c.json, options, "case.json");
  EXPECT_EQ(e.source(), "case.json");
  bool found = false;
  for (const ConfigProblem& p : e.problems()) {
    if (p.path == c.path) {
      found = true;
      EXPECT_NE(p.message.find(c.message), std::string::npos)
          << "path " << p.path << ": message \"" << p.message << "\" lacks \"" << c.message << "\"";
    }
  }
  EXPECT_TRUE(found) << "no problem at path \"" << c.path << "\"; got:\n" << e.what();
}

INSTANTIATE_TEST_SUITE_P(AllCases, ConfigErrorTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::string(info.param.name); });

TEST(ConfigErrors, EveryProblemIsReportedNotJustTheFirst) {
  const char* doc = R"({
    "train_micro_batch_size_per_gpu": 2,
    "zero_optimisation": {},
    "fp16": {"enabled": "no"},
    "optimizer": {"type": "Adam", "params": {"lr": -1, "betas": [2, 0.5]}},
    "gradient_clipping": "big"
  })";
  const ConfigError e = rejection(doc);
  std::vector<std::string> paths;
  for (const auto& p : e.problems()) paths.push_back(p.path);
  for (const char* want : {"zero_optimisation", "fp16.enabled", "optimizer.params.lr", "optimizer.params.betas[0]",
                           "gradient_clipping"}) {
    EXPECT_NE(std::find(paths.begin(), paths.end(), want), paths.end()) << want << " missing from\n" << e.what();
  }
}

TEST(ConfigErrors, ZeroMicroBatchIsOneProblemNotADerivedOne) {
  const ConfigError e = rejection(R"({"train_batch_size": 8, "train_micro_batch_size_per_gpu": 0})");
  ASSERT_EQ(e.problems().size(), 1u) << e.what();
  EXPECT_EQ(e.problems()[0].path, "train_micro_batch_size_per_gpu");
  EXPECT_EQ(e.problems()[0].message, "Micro batch size per gpu: 0 has to be greater than 0");
}

TEST(ConfigErrors, WhatListsOneProblemPerLineWithSourceAndPath) {
  const std::string what =
      rejection(R"({"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 9}, "quux": 1})", {}, "my.json")
          .what();
  EXPECT_NE(what.find("my.json: zero_optimization.stage: must be 0, 1, 2 or 3"), std::string::npos) << what;
  EXPECT_NE(what.find("\nmy.json: quux: unknown key"), std::string::npos) << what;
}

TEST(ConfigErrors, MissingFileNamesTheFile) {
  const ConfigError e = file_rejection("/nonexistent/dir/ds_config.json");
  EXPECT_EQ(e.source(), "/nonexistent/dir/ds_config.json");
  EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
}

TEST(ConfigErrors, SyntaxErrorGivesLineAndColumn) {
  const ConfigError e = rejection("{\n  \"train_batch_size\": 8,\n  \"fp16\": {\"enabled\": tru}\n}");
  EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
}

// Found by scripts/fuzz.sh: a number beyond a double's range escaped as
// nlohmann's out_of_range instead of a ConfigError.
TEST(ConfigErrors, ANumberTooLargeForADoubleIsAConfigError) {
  const ConfigError e = rejection("{\"train_batch_size\": 1e999}");
  EXPECT_NE(std::string(e.what()).find("number overflow"), std::string::npos) << e.what();
}

}  // namespace
}  // namespace zerotrain
