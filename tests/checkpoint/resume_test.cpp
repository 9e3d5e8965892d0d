// Engine checkpoints on one process: bit-for-bit resume for stages 0-3 in
// fp32/bf16/fp16, RNG and client state, module-only loads, and every kind of
// damaged checkpoint rejected with the file named and the engine untouched.

#include "checkpoint_util.h"
#include "engine/training.h"

#include <gtest/gtest.h>

namespace zerotrain::testing {
namespace {

using ckpt::PieceState;

constexpr int64_t kMicro = 4;

Config resume_config(int stage, const std::string& dtype) {
  return test_config(stage, dtype, kMicro, 2, 1.0, [](nlohmann::json& j) {
    j["scheduler"] = {{"type", "WarmupDecayLR"},
                      {"params", {{"warmup_min_lr", 0.0}, {"warmup_max_lr", 2e-3},
                                  {"warmup_num_steps", 3}, {"total_num_steps", 20}}}};
  });
}

// An engine on a fresh MLP (the reference's initial weights), trained `steps`
// steps and saved as `tag` in `dir`.
struct Saved {
  std::shared_ptr<TestModel> model;
  Engine engine;
};
Saved train_and_save(const std::string& dir, const Config& config, int steps, const std::string& tag = "") {
  InitOptions io;
  io.communicator = one_rank_communicator();
  auto model = make_model(ModelKind::kMlp);
  const Data data = make_data(*model, steps, kMicro * 2);
  Engine e = initialize(model, config, io);
  for (int s = 0; s < steps; ++s) engine_step(e, *model, data, s, kMicro);
  e.save_checkpoint(dir, tag);
  return {model, std::move(e)};
}

// Train k1 steps, save, train k2 → A. A second engine on a differently
// initialised model loads and trains k2 → B. A and B must agree bit for bit.
void check_resume(int stage, const std::string& dtype, ModelKind kind) {
  SCOPED_TRACE("stage " + std::to_string(stage) + " " + dtype + " " + to_string(kind));
  TempDir dir;
  const Config config = resume_config(stage, dtype);
  auto comm = one_rank_communicator();
  InitOptions io;
  io.communicator = comm;
  auto model_a = make_model(kind);
  const Data data = make_data(*model_a, 8, kMicro * 2);
  Engine a = initialize(model_a, config, io);
  for (int s = 0; s < 4; ++s) engine_step(a, *model_a, data, s, kMicro);
  SaveCheckpointOptions so;
  so.client_state = {{"epoch", 7}};
  const std::string tag_dir = a.save_checkpoint(dir.path(), "", so);
  EXPECT_EQ(tag_dir, dir / "global_step4");
  EXPECT_EQ(latest_tag(dir.path()), "global_step4");
  const at::Tensor rng_after_save = at::rand({5});
  for (int s = 4; s < 8; ++s) engine_step(a, *model_a, data, s, kMicro);

  auto model_b = make_model(kind, /*seed=*/99);
  Engine b = initialize(model_b, config, io);
  const auto loaded = b.load_checkpoint(dir.path());
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->client_state.at("epoch"), 7);
  EXPECT_TRUE(loaded->rng_restored);
  EXPECT_TRUE(same_bits(at::rand({5}), rng_after_save)) << "the CPU RNG state was not restored";
  EXPECT_EQ(b.global_steps(), 4);
  for (int s = 4; s < 8; ++s) engine_step(b, *model_b, data, s, kMicro);

  EXPECT_EQ(a.global_steps(), b.global_steps());
  EXPECT_EQ(a.skipped_steps(), b.skipped_steps());
  EXPECT_EQ(a.loss_scale(), b.loss_scale());
  EXPECT_EQ(a.lr(), b.lr());
  const auto pa = snapshot(a, *model_a), pb = snapshot(b, *model_b);
  for (const auto& [name, t] : pa) EXPECT_TRUE(same_bits(t, pb.at(name))) << name;
  // And the optimizer state: save both and compare every piece.
  a.save_checkpoint(dir.path(), "a_end");
  b.save_checkpoint(dir.path(), "b_end");
  for (PieceState st : {PieceState::kMaster, PieceState::kExpAvg, PieceState::kExpAvgSq}) {
    const auto sa = full_state(dir / "a_end", st), sb = full_state(dir / "b_end", st);
    for (const auto& [name, t] : sa) EXPECT_TRUE(same_bits(t, sb.at(name))) << to_string(st) << " " << name;
  }
}

TEST(Resume, BitwiseOnOneRankEveryStageAndDtype) {
  for (int stage : {0, 1, 2})
    for (const char* dtype : {"fp32", "bf16", "fp16"}) check_resume(stage, dtype, ModelKind::kMlp);
  check_resume(2, "bf16", ModelKind::kTransformer);
  // Stage 3: units gathered and released around every forward and backward
  // (the marked model), and units that stay gathered (the plain MLP's).
  for (const char* dtype : {"fp32", "bf16", "fp16"}) check_resume(3, dtype, ModelKind::kMarkedOddMlp);
  check_resume(3, "bf16", ModelKind::kMlp);
}

TEST(Resume, NoLatestMeansNothingToLoad) {
  TempDir dir;
  auto model = make_model(ModelKind::kMlp);
  InitOptions io;
  io.communicator = one_rank_communicator();
  Engine e = initialize(model, resume_config(1, "fp32"), io);
  EXPECT_FALSE(e.load_checkpoint(dir.path()).has_value());
  EXPECT_NE(error_of([&] { e.load_checkpoint(dir.path(), "nope"); }).find("does not exist"), std::string::npos);
}

TEST(Resume, SaveInsideAnAccumulationWindowIsAnError) {
  TempDir dir;
  auto model = make_model(ModelKind::kMlp);
  InitOptions io;
  io.communicator = one_rank_communicator();
  Engine e = initialize(model, resume_config(1, "fp32"), io);
  EXPECT_NE(error_of([&] { e.save_checkpoint(dir.path(), "a/b"); }).find("cannot be a checkpoint tag"),
            std::string::npos);
  const Data data = make_data(*model, 1, kMicro * 2);
  e.backward(torch::mse_loss(model->forward(data.x[0].narrow(0, 0, kMicro)), data.y[0].narrow(0, 0, kMicro)));
  e.step();  // micro step 1 of 2
  EXPECT_NE(error_of([&] { e.save_checkpoint(dir.path()); }).find("accumulation window"), std::string::npos);
}

TEST(Resume, ModuleOnlyLoadsWeightsAndKeepsCounters) {
  TempDir dir;
  const Config config = resume_config(2, "bf16");
  const Saved a = train_and_save(dir.path(), config, 3);
  InitOptions io;
  io.communicator = one_rank_communicator();
  auto model_b = make_model(ModelKind::kMlp, 99);
  Engine b = initialize(model_b, config, io);
  LoadCheckpointOptions o;
  o.load_module_only = true;
  ASSERT_TRUE(b.load_checkpoint(dir.path(), "", o).has_value());
  EXPECT_EQ(b.global_steps(), 0);
  const auto pa = snapshot(*a.model), pb = snapshot(*model_b);
  for (const auto& [name, t] : pa) EXPECT_TRUE(same_bits(t, pb.at(name))) << name;
  // Without optimizer states the counters come back, the moments do not.
  auto model_c = make_model(ModelKind::kMlp, 98);
  Engine c = initialize(model_c, config, io);
  o = {};
  o.load_optimizer_states = false;
  c.load_checkpoint(dir.path(), "", o);
  EXPECT_EQ(c.global_steps(), 3);
  c.save_checkpoint(dir.path(), "c");
  for (const auto& [name, t] : full_state(dir / "c", PieceState::kExpAvg))
    EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;
}

// A damaged checkpoint fails the load, names the file, and changes nothing.
TEST(Resume, DamagedCheckpointsAreRejectedAndChangeNothing) {
  TempDir dir;
  const Config config = resume_config(1, "bf16");
  train_and_save(dir.path(), config, 2, "good");
  InitOptions io;
  io.communicator = one_rank_communicator();
  auto model_b = make_model(ModelKind::kMlp, 99);
  Engine b = initialize(model_b, config, io);
  const auto before = snapshot(*model_b);

  const std::string rank_file = dir / "good/rank_00000.safetensors";
  const std::string original = ckpt::read_small_file(rank_file);
  const auto restore = [&] {
    ckpt::OutputFile f(rank_file);
    f.write(original.data(), original.size());
    f.sync_and_close();
  };
  struct Case {
    std::string what;
    std::function<void()> damage;
    std::string file;
    std::string expect;
  };
  const std::vector<Case> cases{
      {"a flipped data byte", [&] { flip_byte(rank_file, original.size() - 3); }, rank_file, "corrupt"},
      {"a flipped header byte", [&] { flip_byte(rank_file, 40); }, rank_file, ""},
      {"a truncated file", [&] { truncate_file(rank_file, original.size() / 2); }, rank_file, "truncated"},
      {"a missing file", [&] { ckpt::remove_tree(rank_file); }, rank_file, "missing"},
  };
  for (const Case& c : cases) {
    c.damage();
    const std::string e = error_of([&] { b.load_checkpoint(dir.path(), "good"); });
    EXPECT_NE(e.find(c.file), std::string::npos) << c.what << ": " << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.what << ": " << e;
    const CheckpointInfo info = inspect_checkpoint(dir.path(), "good");
    EXPECT_FALSE(info.all_ok()) << c.what;
    restore();
  }
  const std::string manifest = dir / "good/manifest.json";
  const std::string manifest_text = ckpt::read_small_file(manifest);
  flip_byte(manifest, manifest_text.size() / 2);
  std::string e = error_of([&] { b.load_checkpoint(dir.path(), "good"); });
  EXPECT_NE(e.find(manifest), std::string::npos) << e;
  const auto after = snapshot(*model_b);
  for (const auto& [name, t] : before) EXPECT_TRUE(same_bits(t, after.at(name))) << "changed: " << name;
  EXPECT_EQ(b.global_steps(), 0);

  ckpt::write_file_atomically(dir / "latest", "gone");
  e = error_of([&] { b.load_checkpoint(dir.path()); });
  EXPECT_NE(e.find("gone"), std::string::npos) << e;
}

// zero_optimization.load_from_fp32_weights: true (the default) restores the
// saved fp32 master weights; false rebuilds them from the saved bf16 weights,
// as DeepSpeed does. Both load the moments. What this catches: the key parsed
// and ignored (one of the two cases then fails), or the moments skipped.
TEST(Resume, LoadFromFp32WeightsChoosesWhereTheMasterWeightsComeFrom) {
  TempDir dir;
  const Config config = resume_config(1, "bf16");
  const Saved a = train_and_save(dir.path(), config, 3);
  const auto saved_master = full_state(dir / "global_step3", PieceState::kMaster);
  const auto saved_model = full_state(dir / "global_step3", PieceState::kModel);
  const auto saved_exp_avg = full_state(dir / "global_step3", PieceState::kExpAvg);
  bool master_differs_from_model = false;
  for (const auto& [name, t] : saved_master)
    master_differs_from_model = master_differs_from_model || !t.equal(saved_model.at(name).to(at::kFloat));
  ASSERT_TRUE(master_differs_from_model) << "the test needs master weights that bf16 cannot hold exactly";
  for (bool from_fp32 : {true, false}) {
    SCOPED_TRACE(from_fp32 ? "load_from_fp32_weights true" : "load_from_fp32_weights false");
    const Config c = test_config(1, "bf16", kMicro, 2, 1.0, [&](nlohmann::json& j) {
      j["zero_optimization"]["load_from_fp32_weights"] = from_fp32;
    });
    InitOptions io;
    io.communicator = one_rank_communicator();
    auto model = make_model(ModelKind::kMlp, 99);
    Engine b = initialize(model, c, io);
    ASSERT_TRUE(b.load_checkpoint(dir.path()).has_value());
    for (const auto& [name, master] : saved_master) {
      const at::Tensor want = from_fp32 ? master : saved_model.at(name).to(at::kFloat);
      EXPECT_TRUE(same_bits(b.full_fp32_param(name).reshape({-1}), want.reshape({-1}))) << name;
      EXPECT_TRUE(same_bits(b.full_optimizer_state(name, "exp_avg").reshape({-1}), saved_exp_avg.at(name).reshape({-1})))
          << name;
    }
  }
}

// A checkpoint written by the engine before the unit redesign (bucket units
// cut from one optimizer group) loads onto today's module units, here at
// another world size (1, saved at 2) and stage (1, saved at 2): the master
// weights, moments and counters come back exactly.
TEST(Resume, ACheckpointSavedBeforeTheUnitRedesignLoads) {
  const std::string tag_dir = v1_checkpoint_dir() + "/global_step3";
  const Config config = test_config(1, "bf16", 2, 2, 0.05, [](nlohmann::json& j) {
    j["optimizer"]["params"]["weight_decay"] = 0.01;
  });
  InitOptions io;
  io.communicator = one_rank_communicator();
  auto model = make_model(ModelKind::kMlp, 99);
  Engine e = initialize(model, config, io);
  const auto loaded = e.load_checkpoint(v1_checkpoint_dir());
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->saved_world_size, 2);
  EXPECT_EQ(loaded->saved_zero_stage, 2);
  EXPECT_EQ(e.global_steps(), 3);
  EXPECT_EQ(e.micro_steps(), 6);
  const auto master = full_state(tag_dir, PieceState::kMaster);
  const auto exp_avg_sq = full_state(tag_dir, PieceState::kExpAvgSq);
  const auto model_weights = full_state(tag_dir, PieceState::kModel);
  const auto params = model->named_parameters();
  for (const auto& [name, t] : master) {
    EXPECT_TRUE(same_bits(e.full_fp32_param(name).reshape({-1}), t.reshape({-1}))) << name;
    EXPECT_TRUE(same_bits(e.full_optimizer_state(name, "exp_avg_sq").reshape({-1}), exp_avg_sq.at(name).reshape({-1})))
        << name;
    EXPECT_TRUE(same_bits(params[name].detach().reshape({-1}), model_weights.at(name).reshape({-1}))) << name;
  }
}

// A model that does not match the checkpoint is named, parameter by parameter.
TEST(Resume, MismatchedModelIsNamed) {
  TempDir dir;
  InitOptions io;
  io.communicator = one_rank_communicator();
  auto mlp = make_model(ModelKind::kMlp);
  Engine a = initialize(mlp, resume_config(0, "fp32"), io);
  a.save_checkpoint(dir.path());
  auto block = make_model(ModelKind::kTransformer);
  Engine b = initialize(block, resume_config(0, "fp32"), io);
  const std::string e = error_of([&] { b.load_checkpoint(dir.path()); });
  EXPECT_NE(e.find("has no parameter"), std::string::npos) << e;
}

}  // namespace
}  // namespace zerotrain::testing
