// The engine's API on one rank: schedules wired to the update, parameter
// groups, the minimum loss scale, no_sync, and the errors for misuse.

#include "engine/training.h"

#include <gtest/gtest.h>

namespace zerotrain::testing {
namespace {

constexpr int64_t kMicro = 4;

std::shared_ptr<Communicator> one_rank() {
  static std::shared_ptr<Communicator> comm = one_rank_communicator();
  return comm;
}

Engine make_engine(const std::shared_ptr<TestModel>& model, const Config& config,
                   std::vector<ParamGroup> groups = {}) {
  InitOptions o;
  o.communicator = one_rank();
  o.param_groups = std::move(groups);
  return initialize(model, config, o);
}

std::vector<at::Tensor> snapshot(TestModel& m) {
  std::vector<at::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

double max_change(TestModel& m, const std::vector<at::Tensor>& before) {
  double worst = 0;
  const auto now = m.parameters();
  for (size_t i = 0; i < now.size(); ++i)
    worst = std::max(worst, (now[i] - before[i]).abs().max().item<double>());
  return worst;
}

// Adam's first update moves every parameter with a gradient by lr * g / (|g| + eps),
// so the largest change after the first step is the lr that step used.
TEST(EngineSchedule, EveryDeepSpeedScheduleDrivesTheUpdates) {
  for (const char* file : {"sched_lr_range_test.json", "sched_one_cycle.json",
                           "sched_warmup_cosine_lr.json", "sched_warmup_decay_lr.json", "zero0_fp32.json"}) {
    const nlohmann::json scheduler = load_config_json(file)["scheduler"];
    const Config config = test_config(1, "fp32", kMicro, 1, 0.0, [&](nlohmann::json& j) {
      j["scheduler"] = scheduler;
      j["optimizer"]["params"]["weight_decay"] = 0.0;
    });
    SCOPED_TRACE(std::string(file) + ": " + scheduler_type_name(*config.scheduler()));
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, 6, kMicro);
    Engine e = make_engine(model, config);
    const double lr_start = schedule_lr(config, -1);
    EXPECT_DOUBLE_EQ(e.lr()[0], lr_start);
    const auto before = snapshot(*model);
    engine_step(e, *model, data, 0, kMicro);
    // Update 1 runs with lr(-1) (0 for WarmupCosineLR: nothing moves).
    // (plus the fp32 rounding of parameters near 1: 1.2e-7)
    EXPECT_NEAR(max_change(*model, before), lr_start, 1e-3 * lr_start + 1.2e-7);
    for (int s = 1; s < 6; ++s) {
      EXPECT_DOUBLE_EQ(e.lr()[0], schedule_lr(config, s - 1)) << "after " << s << " updates";
      engine_step(e, *model, data, s, kMicro);
    }
  }
}

TEST(EngineParamGroups, EachGroupHasItsOwnLrAndEveryParameterMustBeInOne) {
  const Config config = test_config(1, "fp32", kMicro, 1, 0.0);
  auto model = make_model(ModelKind::kMlp);
  auto& mlp = static_cast<Mlp&>(*model);
  std::vector<at::Tensor> frozen_lr{mlp.l1->weight, mlp.l1->bias};
  std::vector<at::Tensor> rest{mlp.l2->weight, mlp.l2->bias, mlp.l3->weight, mlp.l3->bias};
  const at::Tensor l1_before = mlp.l1->weight.detach().clone();
  const at::Tensor l2_before = mlp.l2->weight.detach().clone();
  const Data data = make_data(*model, 3, kMicro);
  Engine e = make_engine(model, config, {{frozen_lr, 0.0, std::nullopt}, {rest, 5e-3, 0.0}});
  EXPECT_EQ(e.lr(), (std::vector<double>{0.0, 5e-3}));
  for (int s = 0; s < 3; ++s) engine_step(e, *model, data, s, kMicro);
  EXPECT_TRUE(mlp.l1->weight.equal(l1_before));
  EXPECT_FALSE(mlp.l2->weight.equal(l2_before));

  auto other = make_model(ModelKind::kMlp);
  auto& m2 = static_cast<Mlp&>(*other);
  try {
    make_engine(other, config,
                {{{m2.l1->weight, m2.l1->bias, m2.l2->weight, m2.l2->bias, m2.l3->weight}, std::nullopt, std::nullopt}});
    ADD_FAILURE() << "a parameter outside every group must be an error";
  } catch (const c10::Error& err) {
    EXPECT_NE(std::string(err.what()).find("'l3.bias'"), std::string::npos) << err.what();
  }
}

TEST(EngineLossScale, AtTheMinimumRaisesOrKeepsSkippingAsConfigured) {
  for (const char* action : {"raise", "skip"}) {
    const Config config = test_config(2, "fp16", kMicro, 1, 0.0, [&](nlohmann::json& j) {
      j["fp16"]["initial_scale_power"] = 1;
      j["fp16"]["hysteresis"] = 1;
      j["fp16"]["min_loss_scale"] = 1;
      j["fp16"]["min_loss_scale_action"] = action;
    });
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, 3, kMicro);
    Engine e = make_engine(model, config);
    const double inf = std::numeric_limits<double>::infinity();
    engine_step(e, *model, data, 0, kMicro, inf);
    EXPECT_EQ(e.loss_scale(), 1.0);
    if (std::string(action) == "raise") {
      try {
        engine_step(e, *model, data, 1, kMicro, inf);
        ADD_FAILURE() << "an overflow at the minimum scale must raise";
      } catch (const c10::Error& err) {
        EXPECT_NE(std::string(err.what()).find("step 2"), std::string::npos) << err.what();
      }
    } else {
      engine_step(e, *model, data, 1, kMicro, inf);
      engine_step(e, *model, data, 2, kMicro);
      EXPECT_EQ(e.skipped_steps(), 2);
      EXPECT_TRUE(e.was_step_applied());
    }
  }
}

TEST(EngineNoSync, DefersReductionForStagesZeroAndOneAndIsRefusedForStageTwo) {
  for (int stage : {0, 1}) {
    const Config config = test_config(stage, "fp32", kMicro, 1, 0.0);
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, 2, kMicro);
    Engine e = make_engine(model, config);
    const int64_t reductions_before = e.communicator().stats()[Collective::kAllReduce].calls +
                                      e.communicator().stats()[Collective::kReduceScatter].calls;
    {
      NoSyncGuard guard = e.no_sync();
      e.backward(torch::mse_loss(model->forward(data.x[0]), data.y[0]));
      EXPECT_THROW(e.step(), c10::Error);
    }
    EXPECT_EQ(e.communicator().stats()[Collective::kAllReduce].calls +
                  e.communicator().stats()[Collective::kReduceScatter].calls,
              reductions_before);
    e.backward(torch::mse_loss(model->forward(data.x[1]), data.y[1]));
    e.step();
    EXPECT_TRUE(e.was_step_applied());
  }
  auto model = make_model(ModelKind::kMlp);
  Engine e = make_engine(model, test_config(2, "fp32", kMicro, 1, 0.0));
  EXPECT_THROW(e.no_sync(), c10::Error);
}

TEST(EngineErrors, MisuseAndUnsupportedSettingsNameTheProblem) {
  auto expect_config_error = [](const Config& config, const std::string& path) {
    auto model = make_model(ModelKind::kMlp);
    try {
      make_engine(model, config);
      ADD_FAILURE() << "expected a ConfigError for " << path;
    } catch (const ConfigError& err) {
      EXPECT_NE(std::string(err.what()).find(path), std::string::npos) << err.what();
    }
  };
  // Offload to NVMe, a partial ratio, parameter offload alone, and NVMe-only settings with "cpu".
  expect_config_error(test_config(2, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) {
                                    j["zero_optimization"]["offload_optimizer"] = {{"device", "nvme"},
                                                                                   {"nvme_path", "/tmp"}};
                                  }),
                      "zero_optimization.offload_optimizer.device");
  expect_config_error(test_config(3, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) {
                                    j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"}, {"ratio", 0.3}};
                                  }),
                      "zero_optimization.offload_optimizer.ratio");
  expect_config_error(test_config(3, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) {
                                    j["zero_optimization"]["offload_param"] = {{"device", "cpu"}};
                                  }),
                      "zero_optimization.offload_param");
  expect_config_error(test_config(2, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) {
                                    j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"},
                                                                                   {"pipeline_read", true}};
                                  }),
                      "zero_optimization.offload_optimizer.pipeline_read");
  expect_config_error(test_config(1, "fp32", kMicro, 1, 0.0, [](nlohmann::json& j) { j.erase("optimizer"); }),
                      "optimizer");
  // Parsed, and until 2026-11-30 ignored: the fused kernels ran whatever it said.
  expect_config_error(test_config(1, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) { j["optimizer"]["params"]["torch_adam"] = true; }),
                      "optimizer.params.torch_adam");
  expect_config_error(test_config(1, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) {
                                    j["activation_checkpointing"] = {{"partition_activations", true}};
                                  }),
                      "activation_checkpointing.partition_activations");
  expect_config_error(test_config(1, "fp32", kMicro, 1, 0.0,
                                  [](nlohmann::json& j) { j["activation_checkpointing"] = {{"number_checkpoints", 4}}; }),
                      "activation_checkpointing.number_checkpoints");

  auto model = make_model(ModelKind::kMlp);
  const Data data = make_data(*model, 1, kMicro);
  Engine e = make_engine(model, test_config(1, "fp32", kMicro, 1, 0.0));
  try {
    e.step();
    ADD_FAILURE() << "step() without backward() must fail";
  } catch (const c10::Error& err) {
    EXPECT_NE(std::string(err.what()).find("call backward()"), std::string::npos) << err.what();
  }
}

TEST(EngineGradients, ModuleZeroGradSetToNoneKeepsTrainingExact) {
  // LibTorch's Module::zero_grad() drops .grad; the engine re-attaches its views.
  const Config config = test_config(1, "fp32", kMicro, 1, 0.0);
  auto model = make_model(ModelKind::kTransformer);
  const Data data = make_data(*model, 4, kMicro);
  Engine e = make_engine(model, config);
  for (int s = 0; s < 4; ++s) {
    model->zero_grad();
    auto forward_timer = e.time(Phase::kForward);
    engine_step(e, *model, data, s, kMicro);
  }
  const PhaseTimes t = e.timers();
  EXPECT_EQ(t.count[static_cast<size_t>(Phase::kForward)], 4);
  EXPECT_EQ(t.count[static_cast<size_t>(Phase::kBackward)], 4);
  EXPECT_EQ(t.count[static_cast<size_t>(Phase::kStep)], 4);
  EXPECT_EQ(t.count[static_cast<size_t>(Phase::kAllGather)], 4);  // stage 1 gathers
  EXPECT_GT(t.ms(Phase::kBackward), 0.0);
  auto ref = make_model(ModelKind::kTransformer);
  reference_train(*ref, config, data, 4);
  const auto got = model->named_parameters();
  for (const auto& item : ref->named_parameters())
    EXPECT_TRUE(at::allclose(got[item.key()], item.value(), 1e-5, 1e-6)) << item.key();
}

TEST(EngineMemory, Fp32StageZeroUpdatesParametersInPlace) {
  auto model = make_model(ModelKind::kMlp);
  Engine e = make_engine(model, test_config(0, "fp32", kMicro, 1, 0.0));
  const MemoryReport m = e.memory_report();
  EXPECT_EQ(m.master_weights, 0) << m.to_string();
  EXPECT_EQ(m.optimizer_states, 2 * m.parameters) << m.to_string();
}

// The same engine on CUDA tensors (NCCL at one rank), against the fp32 CPU
// reference. Skips without a GPU; see docs/architecture.md for what has run.
TEST(EngineCuda, OneRankMatchesLibTorchAdamWInEveryDtype) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto comm = one_rank_communicator("nccl");
  const int steps = 10;
  for (int stage : {0, 1, 2}) {
    for (const char* dtype : {"fp32", "bf16", "fp16"}) {
      SCOPED_TRACE("stage " + std::to_string(stage) + " " + dtype);
      const Config config = test_config(stage, dtype, kMicro, 1, 0.0);
      auto model = make_model(ModelKind::kTransformer);
      model->to(torch::kCUDA);
      const Data data = make_data(*model, steps, kMicro);
      InitOptions o;
      o.communicator = comm;
      Engine e = initialize(model, config, o);
      for (int s = 0; s < steps; ++s) engine_step(e, *model, data, s, kMicro);
      auto ref = make_model(ModelKind::kTransformer);
      reference_train(*ref, config, data, steps);
      const bool fp32 = std::string(dtype) == "fp32";
      // fp32: TF32 is off by default in LibTorch, so CUDA and CPU differ by rounding only.
      const double rtol = fp32 ? 1e-5 : (std::string(dtype) == "bf16" ? 1.0 / 128 : 1.0 / 1024);
      const double atol = fp32 ? 1e-6 : 0.25 * steps * config.optimizer()->lr;
      const auto got = model->named_parameters();
      for (const auto& item : ref->named_parameters())
        EXPECT_TRUE(at::allclose(got[item.key()].cpu().to(at::kFloat), item.value(), rtol, atol))
            << item.key();
      EXPECT_EQ(e.skipped_steps(), 0);
    }
  }
}

}  // namespace
}  // namespace zerotrain::testing
