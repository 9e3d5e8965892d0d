// What a valid config means: DeepSpeed's defaults, the batch-triple
// resolution, "Adam" vs AdamW, None-valued keys, aliases, deprecated
// spellings and "auto".

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "zerotrain/config.h"

#include "support/paths.h"

namespace zerotrain {
namespace {

using nlohmann::json;

Config parse(const std::string& text, int64_t world_size = 1) {
  ResolveOptions o;
  o.world_size = world_size;
  return Config::from_string(text, o);
}

TEST(ConfigDefaults, MatchDeepSpeed019) {
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 4})");
  EXPECT_FALSE(c.optimizer().has_value());
  EXPECT_FALSE(c.scheduler().has_value());
  EXPECT_EQ(c.model_dtype(), DType::kFloat32);
  EXPECT_DOUBLE_EQ(c.gradients().clipping, 1.0);  // 1.0 since DeepSpeed 0.19.3
  EXPECT_DOUBLE_EQ(c.gradients().predivide_factor, 1.0);
  EXPECT_FALSE(c.gradients().prescale);
  EXPECT_EQ(c.gradients().communication_dtype, DType::kFloat32);
  EXPECT_FALSE(c.fp16().enabled);
  EXPECT_TRUE(c.fp16().dynamic_loss_scale());
  EXPECT_EQ(c.fp16().initial_scale_power, 16);
  EXPECT_EQ(c.fp16().loss_scale_window, 1000);
  EXPECT_EQ(c.fp16().hysteresis, 2);
  EXPECT_FALSE(c.fp16().consecutive_hysteresis);
  EXPECT_DOUBLE_EQ(c.fp16().min_loss_scale, 1.0);
  EXPECT_EQ(c.fp16().min_loss_scale_action, MinLossScaleAction::kRaise);
  EXPECT_TRUE(c.bf16().check_grad_overflow);  // true since DeepSpeed 0.19.3

  const ZeroConfig& z = c.zero();
  EXPECT_EQ(z.stage, 0);
  EXPECT_TRUE(z.contiguous_gradients);
  EXPECT_TRUE(z.reduce_scatter);
  EXPECT_EQ(z.reduce_bucket_size, 500'000'000);
  EXPECT_EQ(z.allgather_bucket_size, 500'000'000);
  EXPECT_FALSE(z.overlap_comm);
  EXPECT_EQ(z.sub_group_size, 1'000'000'000);
  EXPECT_FALSE(z.offload_optimizer.enabled());
  EXPECT_TRUE(z.offload_optimizer.pin_memory);  // true since DeepSpeed 0.19.5
  EXPECT_EQ(z.offload_optimizer.buffer_count, 4);
  EXPECT_EQ(z.offload_param.buffer_count, 5);
  EXPECT_EQ(z.offload_param.buffer_size, 100'000'000);
  EXPECT_EQ(z.stage3.prefetch_bucket_size, 50'000'000);  // the code's 5e7, not the docs' 5e8
  EXPECT_EQ(z.stage3.param_persistence_threshold, 100'000);
  EXPECT_EQ(z.stage3.model_persistence_threshold, INT64_MAX);
  EXPECT_EQ(z.stage3.max_live_parameters, 1'000'000'000);
  EXPECT_EQ(z.stage3.max_reuse_distance, 1'000'000'000);
  EXPECT_FALSE(z.stage3.gather_16bit_weights_on_model_save);

  EXPECT_FALSE(c.logging().steps_per_print.has_value());
  EXPECT_FALSE(c.logging().wall_clock_breakdown);
  EXPECT_EQ(c.logging().tensorboard.job_name, "DeepSpeedJobName");
  EXPECT_EQ(c.checkpoint().tag_validation, TagValidation::kWarn);
  EXPECT_DOUBLE_EQ(c.comm().timeout_s, 600.0);
  EXPECT_FALSE(c.comm().check_collectives);
  EXPECT_FALSE(c.zero_allow_untested_optimizer());
  EXPECT_TRUE(c.zero_force_ds_cpu_optimizer());
}

struct BatchCase {
  const char* json;
  int64_t world;
  int64_t tb, mb, gas;
};

class BatchResolution : public ::testing::TestWithParam<BatchCase> {};

TEST_P(BatchResolution, FollowsDeepSpeedTable) {
  const BatchCase& b = GetParam();
  const BatchConfig got = parse(b.json, b.world).batch();
  EXPECT_EQ(got.train_batch_size, b.tb);
  EXPECT_EQ(got.micro_batch_per_gpu, b.mb);
  EXPECT_EQ(got.gradient_accumulation_steps, b.gas);
  EXPECT_EQ(got.world_size, b.world);
}

INSTANTIATE_TEST_SUITE_P(
    Table, BatchResolution,
    ::testing::Values(
        BatchCase{R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2})", 4, 32, 4, 2},
        BatchCase{R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4})", 2, 32, 4, 4},
        BatchCase{R"({"train_batch_size": 32, "gradient_accumulation_steps": 2})", 4, 32, 4, 2},
        BatchCase{R"({"train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": 5})", 2, 30, 3, 5},
        BatchCase{R"({"train_batch_size": 24})", 3, 24, 8, 1},
        BatchCase{R"({"train_micro_batch_size_per_gpu": 6})", 4, 24, 6, 1},
        BatchCase{R"({"train_batch_size": 5e1, "train_micro_batch_size_per_gpu": 2.5e1})", 1, 50, 25, 2}));

TEST(ConfigResolution, ResolvedAgainAtAnotherWorldSize) {
  const Config one = parse(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8})");
  EXPECT_EQ(one.batch().gradient_accumulation_steps, 8);
  ResolveOptions o;
  o.world_size = 4;
  const Config four = one.resolved(o);
  EXPECT_EQ(four.batch().gradient_accumulation_steps, 2);
  EXPECT_EQ(one.batch().gradient_accumulation_steps, 8);  // the original is unchanged
  o.world_size = 16;
  EXPECT_THROW(one.resolved(o), ConfigError);  // 64 // 8 // 16 == 0
}

TEST(ConfigOptimizer, AdamMeansAdamWUnlessAdamWModeFalse) {
  const std::string base = R"({"train_micro_batch_size_per_gpu": 1, "optimizer": )";
  EXPECT_EQ(parse(base + R"({"type": "Adam"}})").optimizer()->weight_decay_mode, WeightDecayMode::kDecoupled);
  EXPECT_EQ(parse(base + R"({"type": "Adam", "params": {"adam_w_mode": false}}})").optimizer()->weight_decay_mode,
            WeightDecayMode::kL2);
  // "AdamW" is decoupled whatever adam_w_mode says (engine.py: name == adamw or adam_w_mode).
  EXPECT_EQ(parse(base + R"({"type": "AdamW", "params": {"adam_w_mode": false}}})").optimizer()->weight_decay_mode,
            WeightDecayMode::kDecoupled);
  // Type names are case-insensitive, as in DeepSpeed.
  EXPECT_EQ(parse(base + R"({"type": "adamw"}})").optimizer()->kind, OptimizerKind::kAdamW);
  EXPECT_EQ(parse(base + R"({"type": "LAMB"}})").optimizer()->kind, OptimizerKind::kLamb);
}

TEST(ConfigOptimizer, ParamsAndDefaults) {
  const auto adam = *parse(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "Adam",
      "params": {"lr": 3e-4, "betas": [0.8, 0.95], "weight_decay": 0.1, "torch_adam": true}}})").optimizer();
  EXPECT_DOUBLE_EQ(adam.lr, 3e-4);
  EXPECT_DOUBLE_EQ(adam.betas[0], 0.8);
  EXPECT_DOUBLE_EQ(adam.betas[1], 0.95);
  EXPECT_DOUBLE_EQ(adam.eps, 1e-8);
  EXPECT_DOUBLE_EQ(adam.weight_decay, 0.1);
  EXPECT_TRUE(adam.bias_correction);
  EXPECT_TRUE(adam.torch_adam);

  const auto lamb = *parse(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "Lamb"}})").optimizer();
  EXPECT_DOUBLE_EQ(lamb.lr, 1e-3);
  EXPECT_DOUBLE_EQ(lamb.lamb.max_coeff, 10.0);
  EXPECT_DOUBLE_EQ(lamb.lamb.min_coeff, 0.01);
  EXPECT_FALSE(lamb.lamb.eps_inside_sqrt);
}

TEST(ConfigScheduler, WarmupMaxLrNoneMeansOptimizerLr) {
  const Config with = parse(R"({"train_micro_batch_size_per_gpu": 1,
      "optimizer": {"type": "AdamW", "params": {"lr": 0.05}}, "scheduler": {"type": "WarmupLR"}})");
  const auto& w = std::get<WarmupLRParams>(*with.scheduler());
  ASSERT_TRUE(w.warmup_max_lr.has_value());
  EXPECT_DOUBLE_EQ(*w.warmup_max_lr, 0.05);
  EXPECT_EQ(w.warmup_num_steps, 1000);
  EXPECT_EQ(w.warmup_type, WarmupType::kLog);
  EXPECT_EQ(w.last_batch_iteration, -1);

  // Without an optimizer section the program's optimizer decides.
  const Config without = parse(R"({"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "WarmupLR"}})");
  EXPECT_FALSE(std::get<WarmupLRParams>(*without.scheduler()).warmup_max_lr.has_value());
}

TEST(ConfigScheduler, EachTypeWithItsDefaults) {
  const std::string base = R"({"train_micro_batch_size_per_gpu": 1, "scheduler": )";
  const auto decay = std::get<WarmupDecayLRParams>(
      *parse(base + R"({"type": "WarmupDecayLR", "params": {"total_num_steps": 100}}})").scheduler());
  EXPECT_EQ(decay.total_num_steps, 100);
  EXPECT_DOUBLE_EQ(decay.warmup_max_lr, 0.001);  // WarmupDecayLR keeps DeepSpeed's 0.001 default

  const auto cosine = std::get<WarmupCosineLRParams>(
      *parse(base + R"({"type": "WarmupCosineLR", "params": {"total_num_steps": 10}}})").scheduler());
  EXPECT_DOUBLE_EQ(cosine.cos_min_ratio, 1e-4);
  EXPECT_DOUBLE_EQ(cosine.warmup_min_ratio, 0.0);

  const auto cycle = std::get<OneCycleParams>(*parse(
      base + R"({"type": "OneCycle", "params": {"cycle_min_lr": 0.1, "cycle_max_lr": 1, "cycle_first_step_size": 7,
                 "cycle_first_stair_count": 3}}})").scheduler());
  EXPECT_EQ(cycle.cycle_second_step_size, 7);  // None -> cycle_first_step_size
  EXPECT_EQ(cycle.cycle_second_stair_count, 3);
  EXPECT_TRUE(cycle.cycle_momentum);
  EXPECT_DOUBLE_EQ(cycle.cycle_min_mom, 0.8);
  EXPECT_DOUBLE_EQ(cycle.cycle_max_mom, 0.9);

  const auto range = std::get<LRRangeTestParams>(*parse(base + R"({"type": "LRRangeTest"}})").scheduler());
  EXPECT_DOUBLE_EQ(range.min_lr, 1e-3);
  EXPECT_EQ(range.step_size, 2000);
  EXPECT_DOUBLE_EQ(range.step_rate, 1.0);
  EXPECT_FALSE(range.staircase);
  EXPECT_STREQ(scheduler_type_name(*parse(base + R"({"type": "LRRangeTest"}})").scheduler()), "LRRangeTest");
}

TEST(ConfigZero, OverlapCommNoneMeansStage3Only) {
  EXPECT_FALSE(parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}})").zero().overlap_comm);
  EXPECT_TRUE(parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}})").zero().overlap_comm);
  EXPECT_TRUE(parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2, "overlap_comm": true}})")
                  .zero()
                  .overlap_comm);
  EXPECT_TRUE(
      parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3, "overlap_comm": null}})")
          .zero()
          .overlap_comm);
}

TEST(ConfigZero, StageIsAValueSayingWhatIsSharded) {
  for (int stage = 0; stage <= 3; ++stage) {
    const ShardingPolicy p = ShardingPolicy::for_stage(stage);
    EXPECT_EQ(p.optimizer_states, stage >= 1);
    EXPECT_EQ(p.gradients, stage >= 2);
    EXPECT_EQ(p.parameters, stage >= 3);
  }
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}})");
  EXPECT_TRUE(c.zero().sharding().gradients);
  EXPECT_FALSE(c.zero().sharding().parameters);
}

TEST(ConfigZero, ShortAliasesOfStage3Keys) {
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3,
      "prefetch_bucket_size": 123, "param_persistence_threshold": 7, "max_live_parameters": 99,
      "max_reuse_distance": 5, "gather_16bit_weights_on_model_save": true, "model_persistence_threshold": 1000}})");
  EXPECT_EQ(c.zero().stage3.prefetch_bucket_size, 123);
  EXPECT_EQ(c.zero().stage3.param_persistence_threshold, 7);
  EXPECT_EQ(c.zero().stage3.max_live_parameters, 99);
  EXPECT_EQ(c.zero().stage3.max_reuse_distance, 5);
  EXPECT_EQ(c.zero().stage3.model_persistence_threshold, 1000);
  EXPECT_TRUE(c.zero().stage3.gather_16bit_weights_on_model_save);
}

TEST(ConfigZero, DeprecatedSpellingsTranslateWithWarnings) {
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3,
      "cpu_offload": true, "cpu_offload_param": true, "stage3_gather_fp16_weights_on_model_save": true}})");
  EXPECT_EQ(c.zero().offload_optimizer.device, OffloadDevice::kCpu);
  EXPECT_EQ(c.zero().offload_param.device, OffloadDevice::kCpu);
  EXPECT_TRUE(c.zero().stage3.gather_16bit_weights_on_model_save);
  EXPECT_EQ(c.warnings().size(), 3u);

  const Config legacy = parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": true})");
  EXPECT_EQ(legacy.zero().stage, 1);
  ASSERT_EQ(legacy.warnings().size(), 1u);
  EXPECT_EQ(legacy.warnings()[0].path, "zero_optimization");

  const Config bfloat = parse(R"({"train_micro_batch_size_per_gpu": 1, "bfloat16": {"enabled": true}})");
  EXPECT_TRUE(bfloat.bf16().enabled);
  EXPECT_EQ(bfloat.model_dtype(), DType::kBFloat16);
}

// Keys DeepSpeed reads that change nothing in zerotrain's engine are warned
// about, saying what happens instead; they are never silently ignored.
TEST(ConfigZero, KeysWithoutEffectAreWarnedAbout) {
  const auto warned = [](const Config& c, const std::string& path, const std::string& text) {
    for (const ConfigProblem& w : c.warnings())
      if (w.path == path && w.message.find(text) != std::string::npos) return true;
    return false;
  };
  const Config stage1 = Config::from_string(R"({"train_batch_size": 8, "zero_optimization": {"stage": 1,
      "contiguous_gradients": false, "use_multi_rank_bucket_allreduce": true, "sub_group_size": 1000}})");
  EXPECT_TRUE(warned(stage1, "zero_optimization.contiguous_gradients", "no effect at stage 1"));
  EXPECT_TRUE(warned(stage1, "zero_optimization.use_multi_rank_bucket_allreduce", "one reduce-scatter per unit"));
  EXPECT_TRUE(warned(stage1, "zero_optimization.sub_group_size", "stage 3 only"));
  EXPECT_EQ(stage1.zero().sub_group_size, 1000);
  const Config stage3 = Config::from_string(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
      "sub_group_size": 1000}})");
  EXPECT_TRUE(stage3.warnings().empty());
  // The resolved config leaves the keys that do nothing out, so it parses back without warnings.
  const Config quiet = Config::from_string(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2,
      "use_multi_rank_bucket_allreduce": true, "sub_group_size": 1000}})");
  EXPECT_EQ(quiet.warnings().size(), 2u);
  EXPECT_TRUE(Config::from_json(quiet.to_json()).warnings().empty()) << quiet.to_json_string();
}

TEST(ConfigPrecision, CommunicationDtypeFollowsPrecision) {
  EXPECT_EQ(parse(R"({"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true}})").gradients().communication_dtype,
            DType::kFloat16);
  EXPECT_EQ(parse(R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true}})").gradients().communication_dtype,
            DType::kBFloat16);
  EXPECT_EQ(parse(R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true}, "communication_data_type": "FP32"})")
                .gradients()
                .communication_dtype,
            DType::kFloat32);
}

TEST(ConfigPrecision, DisabledFp16SectionIsNotValidated) {
  // DeepSpeed checks loss_scale_window only for fp16 with dynamic scaling.
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": false, "loss_scale_window": 0}})");
  EXPECT_FALSE(c.fp16().enabled);
}

TEST(ConfigUnsupported, SwitchedOffSectionsAreAccepted) {
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "amp": {"enabled": false},
      "pipeline": {}, "wandb": {"enabled": false, "project": "x"}, "flops_profiler": null,
      "timers": {"throughput": {"enabled": true}}, "sparse_gradients": false,
      "zero_optimization": {"stage": 3, "zero_hpz_partition_size": 1, "zero_quantized_weights": false}})");
  EXPECT_EQ(c.zero().stage, 3);
}

TEST(ConfigAuto, ResolvedFromTrainingArguments) {
  ResolveOptions o;
  o.world_size = 4;
  o.auto_values.micro_batch_per_gpu = 8;
  o.auto_values.gradient_accumulation_steps = 2;
  o.auto_values.lr = 2e-5;
  o.auto_values.betas = std::array<double, 2>{0.9, 0.98};
  o.auto_values.eps = 1e-6;
  o.auto_values.weight_decay = 0.01;
  o.auto_values.gradient_clipping = 0.5;
  o.auto_values.warmup_steps = 100;
  o.auto_values.total_steps = 1000;
  o.auto_values.bf16 = true;
  o.auto_values.hidden_size = 1024;
  const Config c = Config::from_file(testing::config_path("hf_trainer_auto.json"), o);
  EXPECT_TRUE(c.unresolved_auto().empty());
  EXPECT_NO_THROW(c.require_resolved());
  EXPECT_EQ(c.batch().train_batch_size, 4 * 8 * 2);
  EXPECT_EQ(c.batch().micro_batch_per_gpu, 8);
  EXPECT_EQ(c.batch().gradient_accumulation_steps, 2);
  EXPECT_DOUBLE_EQ(c.optimizer()->lr, 2e-5);
  EXPECT_DOUBLE_EQ(c.optimizer()->betas[1], 0.98);
  EXPECT_DOUBLE_EQ(c.optimizer()->eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.optimizer()->weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(c.gradients().clipping, 0.5);
  EXPECT_TRUE(c.bf16().enabled);
  const auto& s = std::get<WarmupDecayLRParams>(*c.scheduler());
  EXPECT_DOUBLE_EQ(s.warmup_min_lr, 0.0);
  EXPECT_DOUBLE_EQ(s.warmup_max_lr, 2e-5);
  EXPECT_EQ(s.warmup_num_steps, 100);
  EXPECT_EQ(s.total_num_steps, 1000);
  EXPECT_EQ(c.zero().reduce_bucket_size, 1024 * 1024);                 // H^2
  EXPECT_EQ(c.zero().stage3.prefetch_bucket_size, 943'718);            // 0.9 H^2
  EXPECT_EQ(c.zero().stage3.param_persistence_threshold, 10 * 1024);  // 10 H
}

TEST(ConfigAuto, UnresolvedAutoLoadsButBlocksAnEngine) {
  ResolveOptions o;
  o.auto_values.hidden_size = 64;
  const Config c = Config::from_file(testing::config_path("hf_trainer_auto.json"), o);
  const auto& u = c.unresolved_auto();
  EXPECT_NE(std::find(u.begin(), u.end(), "optimizer.params.lr"), u.end());
  EXPECT_NE(std::find(u.begin(), u.end(), "train_micro_batch_size_per_gpu"), u.end());
  EXPECT_EQ(std::find(u.begin(), u.end(), "zero_optimization.reduce_bucket_size"), u.end());  // resolved from H
  try {
    c.require_resolved();
    FAIL() << "require_resolved accepted unresolved auto values";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.params.lr: \"auto\" was not resolved"), std::string::npos);
  }
  EXPECT_THROW(c.batch(), ConfigError);
  // The document written back keeps "auto" where it is still unresolved.
  const json j = c.to_json();
  EXPECT_EQ(j["optimizer"]["params"]["lr"], "auto");
  EXPECT_EQ(j["zero_optimization"]["reduce_bucket_size"], 64 * 64);
}

TEST(ConfigAuto, UnresolvedAutoUnderAliasesRoundTrips) {
  // "auto" under a short stage3 alias or the legacy bfloat16 name is written
  // back under the resolved document's spelling, so the output parses again.
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "bfloat16": {"enabled": "auto"},
      "zero_optimization": {"stage": 3, "prefetch_bucket_size": "auto", "param_persistence_threshold": "auto"}})");
  const json j = c.to_json();
  EXPECT_EQ(j["zero_optimization"]["stage3_prefetch_bucket_size"], "auto");
  EXPECT_FALSE(j["zero_optimization"].contains("prefetch_bucket_size"));
  EXPECT_EQ(j["bf16"]["enabled"], "auto");
  EXPECT_FALSE(j.contains("bfloat16"));
  // The dtype that follows an unresolved precision stays unresolved too.
  EXPECT_TRUE(j["communication_data_type"].is_null());

  ResolveOptions o;
  o.auto_values.bf16 = true;
  o.auto_values.hidden_size = 10;
  const Config resolved = Config::from_json(j, o);
  EXPECT_TRUE(resolved.unresolved_auto().empty());
  EXPECT_EQ(resolved.gradients().communication_dtype, DType::kBFloat16);
  EXPECT_EQ(resolved.zero().stage3.prefetch_bucket_size, 90);
  EXPECT_EQ(resolved.zero().stage3.param_persistence_threshold, 100);
}

TEST(ConfigAuto, UnresolvedWarmupMaxLrIsNotFilledFromTheOptimizer) {
  const Config c = parse(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "AdamW", "params": {"lr": 0.1}},
      "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto"}}})");
  EXPECT_FALSE(std::get<WarmupLRParams>(*c.scheduler()).warmup_max_lr.has_value());
  EXPECT_EQ(c.to_json()["scheduler"]["params"]["warmup_max_lr"], "auto");
}

TEST(ConfigJson, FromJsonAndFromStringAgree) {
  const json doc = {{"train_micro_batch_size_per_gpu", 2}, {"zero_optimization", {{"stage", 2}}}};
  EXPECT_EQ(Config::from_json(doc).to_json(), Config::from_string(doc.dump()).to_json());
}

TEST(ConfigJson, ToJsonHasEveryResolvedValue) {
  const json j = parse(R"({"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2,
      "zero_optimization": {"stage": 3}, "fp16": {"enabled": true}})", 2).to_json();
  EXPECT_EQ(j["gradient_accumulation_steps"], 4);
  EXPECT_EQ(j["zero_optimization"]["overlap_comm"], true);
  EXPECT_EQ(j["communication_data_type"], "fp16");
  EXPECT_EQ(j["zero_optimization"]["stage3_prefetch_bucket_size"], 50'000'000);
  EXPECT_EQ(j["gradient_clipping"], 1.0);
}

}  // namespace
}  // namespace zerotrain
