// Checkpoints across processes: bit-for-bit resume on 2 ranks, loading onto
// another world size and stage (the state after loading is the saved state
// bit for bit, and training goes on to match an uninterrupted run), export
// read back by Python. Saves killed at random moments are in
// tests/reliability/save_crash_test.cpp.

#include "checkpoint_util.h"
#include "comm/worker_util.h"
#include "engine/training.h"
#include "support/multiprocess.h"

#include <gtest/gtest.h>

#include "support/paths.h"

namespace zerotrain::testing {
namespace {

using ckpt::PieceState;

constexpr int64_t kGlobalBatch = 8;
constexpr int kSaveAt = 4, kSteps = 8;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// CKPT_OFFLOAD: "" (none), "optimizer", or "all" (optimizer and parameters, stage 3).
Config case_config(int stage, const std::string& dtype, int world, const std::string& offload = env("CKPT_OFFLOAD")) {
  return test_config(stage, dtype, kGlobalBatch / world, 1, 0.0, [&](nlohmann::json& j) {
    if (offload.empty()) return;
    j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"}};
    if (offload == "all") j["zero_optimization"]["offload_param"] = {{"device", "cpu"}};
  });
}

// Odd sizes (every unit padded differently at each world size), each layer a
// unit that stage 3 gathers and releases.
constexpr ModelKind kModel = ModelKind::kMarkedOddMlp;

// Phase 1 of a job: train kSaveAt steps from the reference's initial weights, save "saved".
ZT_WORKER(ckpt_save_phase) {
  auto comm = init_distributed();
  const int stage = std::stoi(env("CKPT_STAGE"));
  const std::string dtype = env("CKPT_DTYPE"), dir = env("CKPT_DIR");
  auto model = make_model(kModel);
  const Data data = make_data(*model, kSteps, kGlobalBatch);
  InitOptions io;
  io.communicator = comm;
  Engine e = initialize(model, case_config(stage, dtype, comm->world_size()), io);
  for (int s = 0; s < kSaveAt; ++s) engine_step(e, *model, data, s, kGlobalBatch / comm->world_size());
  e.save_checkpoint(dir, "saved");
  e.save_16bit_model(dir, "live_model.bin");  // the live module: export must equal it
  return 0;
}

// Phase 2: another world size and stage loads "saved"; the state it holds is
// re-saved and compared bit for bit; then training continues and is compared
// with an uninterrupted single-process run.
ZT_WORKER(ckpt_load_phase) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int stage = std::stoi(env("CKPT_STAGE"));
  const std::string dtype = env("CKPT_DTYPE"), dir = env("CKPT_DIR");
  const int n = comm->world_size();
  auto model = make_model(kModel, /*seed=*/1234);
  const Data data = make_data(*model, kSteps, kGlobalBatch);
  InitOptions io;
  io.communicator = comm;
  const Config config = case_config(stage, dtype, n);
  Engine e = initialize(model, config, io);
  const auto loaded = e.load_checkpoint(dir);
  checks.require(loaded.has_value() && loaded->tag == "saved", "load 'saved'");
  checks.require(e.global_steps() == kSaveAt, "global steps restored");
  e.save_checkpoint(dir, "resaved_n" + std::to_string(n));
  if (comm->rank() == 0) {
    std::vector<PieceState> states{PieceState::kMaster, PieceState::kExpAvg, PieceState::kExpAvgSq};
    if (dtype != "fp32") states.push_back(PieceState::kModel);
    for (PieceState st : states) {
      const auto a = full_state(ckpt::join_path(dir, "saved"), st);
      const auto b = full_state(ckpt::join_path(dir, "resaved_n" + std::to_string(n)), st);
      checks.require(a.size() == b.size(), "same parameters");
      for (const auto& [name, t] : a)
        checks.require(b.count(name) && same_bits(t, b.at(name)),
                       std::string("re-sharded ") + to_string(st) + " of " + name + " differs");
    }
  }
  for (int s = kSaveAt; s < kSteps; ++s) engine_step(e, *model, data, s, kGlobalBatch / n);
  if (dtype == "fp32") {
    auto reference = make_model(kModel);
    reference_train(*reference, config, data, kSteps);
    const auto got = snapshot(e, *model);
    for (const auto& item : reference->named_parameters())
      checks.elementwise(got.at(item.key()), item.value(), 1e-5, 1e-6, "after resume: " + item.key());
  }
  return checks.exit_code();
}

// Bit-for-bit resume on 2 ranks: phase A trains 8 steps with a save at 4;
// phase B loads at 4 and trains to 8; rank by rank the parameters agree.
ZT_WORKER(ckpt_resume_two_ranks) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const std::string dir = env("CKPT_DIR");
  for (int stage : {0, 1, 2, 3})
    for (const char* dtype : {"fp32", "bf16", "fp16"}) {
      const std::string what = "stage " + std::to_string(stage) + " " + dtype;
      const std::string sub = ckpt::join_path(dir, std::to_string(stage) + dtype);
      const Config config = test_config(stage, dtype, 2, 2, 1.0);
      InitOptions io;
      io.communicator = comm;
      // Stage 3 on marked layers, so that units are released between steps and around the save.
      const ModelKind kind = stage == 3 ? ModelKind::kMarkedOddMlp : ModelKind::kTransformer;
      auto ma = make_model(kind);
      const Data data = make_data(*ma, kSteps, 2 * 2 * comm->world_size());
      Engine a = initialize(ma, config, io);
      for (int s = 0; s < kSteps; ++s) {
        if (s == kSaveAt) a.save_checkpoint(sub);
        engine_step(a, *ma, data, s, 2);
      }
      auto mb = make_model(kind, 99);
      Engine b = initialize(mb, config, io);
      b.load_checkpoint(sub);
      for (int s = kSaveAt; s < kSteps; ++s) engine_step(b, *mb, data, s, 2);
      const auto pa = snapshot(a, *ma), pb = snapshot(b, *mb);
      for (const auto& [name, t] : pa) checks.require(same_bits(t, pb.at(name)), what + ": " + name);
      checks.require(a.loss_scale() == b.loss_scale() && a.global_steps() == b.global_steps(),
                     what + ": counters");
    }
  return checks.exit_code();
}

void run_phase(const std::string& worker, int world, int stage, const std::string& dtype,
               const std::string& dir, const std::string& offload = "") {
  RankJob job;
  job.world_size = world;
  job.worker = worker;
  job.timeout = std::chrono::seconds(120);
  job.env = {{"CKPT_STAGE", std::to_string(stage)}, {"CKPT_DTYPE", dtype}, {"CKPT_DIR", dir},
             {"CKPT_OFFLOAD", offload}};
  const auto results = run_ranks(job);
  ASSERT_TRUE(all_ranks_succeeded(results)) << worker << " N=" << world << " stage " << stage << " " << dtype
                                             << (offload.empty() ? "" : " offload " + offload);
}

TEST(Checkpoint, ResumesBitwiseOnTwoRanksEveryStageAndDtype) {
  TempDir dir;
  RankJob job;
  job.world_size = 2;
  job.worker = "ckpt_resume_two_ranks";
  job.timeout = std::chrono::seconds(260);
  job.env = {{"CKPT_DIR", dir.path()}};
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

// The checkpoint of data/v1_mlp_zero2_bf16_n2 was saved at step 3 by the
// engine before the unit redesign, on 2 ranks; that engine then trained step
// 4 and its master weights after it are in expected_next_master.safetensors.
// Today's engine (module units, another buffer layout) loads step 3 and
// trains step 4 to the same master weights. What this catches: a load that
// places pieces by the old layout, moments not restored (step 4's update then
// differs), or counters not restored (Adam's bias correction differs).
ZT_WORKER(v1_checkpoint_continues) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const Config config = test_config(2, "bf16", 2, 2, 0.05, [](nlohmann::json& j) {
    j["optimizer"]["params"]["weight_decay"] = 0.01;  // as saved (README.md)
  });
  auto model = make_model(ModelKind::kMlp, 99);
  const Data data = make_data(*model, 4, 2 * 2 * comm->world_size());
  InitOptions io;
  io.communicator = comm;
  Engine e = initialize(model, config, io);
  const auto loaded = e.load_checkpoint(v1_checkpoint_dir());
  checks.require(loaded.has_value() && loaded->rng_restored, "loaded, RNG included (same world size)");
  checks.require(e.global_steps() == 3, "global steps 3");
  engine_step(e, *model, data, 3, 2);
  const auto expected = read_safetensors(v1_checkpoint_dir() + "/expected_next_master.safetensors");
  for (const auto& [name, want] : expected)
    checks.elementwise(e.full_fp32_param(name), want, 1e-6, 1e-8, "master after step 4: " + name);
  return checks.exit_code();
}

TEST(Checkpoint, ACheckpointSavedBeforeTheUnitRedesignContinuesExactly) {
  expect_worker_succeeds("v1_checkpoint_continues", 2, std::chrono::seconds(60));
}

struct Reshard {
  int from_world, from_stage, to_world, to_stage;
  const char* dtype;
};

TEST(Checkpoint, LoadsOntoAnotherWorldSizeAndStage) {
  for (const Reshard r : {Reshard{2, 2, 4, 1, "fp32"}, Reshard{4, 1, 1, 2, "fp32"}, Reshard{1, 0, 2, 2, "fp32"},
                          Reshard{2, 2, 2, 0, "fp32"}, Reshard{2, 2, 4, 2, "bf16"}, Reshard{2, 3, 4, 1, "fp32"},
                          Reshard{1, 0, 2, 3, "fp32"}, Reshard{4, 3, 2, 3, "bf16"}}) {
    SCOPED_TRACE("N=" + std::to_string(r.from_world) + " stage " + std::to_string(r.from_stage) + " -> N=" +
                 std::to_string(r.to_world) + " stage " + std::to_string(r.to_stage) + " " + r.dtype);
    TempDir dir;
    run_phase("ckpt_save_phase", r.from_world, r.from_stage, r.dtype, dir.path());
    run_phase("ckpt_load_phase", r.to_world, r.to_stage, r.dtype, dir.path());
  }
}

// Export of a 4-rank stage-1 checkpoint: the full weights under the model's
// names, equal to what the live module held; read back in C++ here and by
// Python's safetensors and torch.load in read_export.py.
// A checkpoint does not record where the optimizer state lived: saved with
// offload it loads without it and the other way round, on another world size
// (the loaded state re-saves bit for bit, and fp32 training goes on to match
// the uninterrupted reference). Catches a load that skips the offloaded
// optimizer state (injected once: moments not loaded when offloaded, so the
// re-saved exp_avg differs).
TEST(Checkpoint, OffloadedAndPlainCheckpointsLoadIntoEachOther) {
  struct Case {
    int from_world, from_stage;
    const char* from_offload;
    int to_world, to_stage;
    const char* to_offload;
    const char* dtype;
  };
  for (const Case c : {Case{2, 2, "optimizer", 1, 3, "", "fp32"}, Case{1, 3, "all", 2, 2, "", "bf16"},
                       Case{2, 1, "", 1, 3, "all", "fp32"}, Case{1, 2, "", 2, 3, "optimizer", "bf16"}}) {
    SCOPED_TRACE("N=" + std::to_string(c.from_world) + " stage " + std::to_string(c.from_stage) + " offload '" +
                 c.from_offload + "' -> N=" + std::to_string(c.to_world) + " stage " + std::to_string(c.to_stage) +
                 " offload '" + c.to_offload + "' " + c.dtype);
    TempDir dir;
    run_phase("ckpt_save_phase", c.from_world, c.from_stage, c.dtype, dir.path(), c.from_offload);
    run_phase("ckpt_load_phase", c.to_world, c.to_stage, c.dtype, dir.path(), c.to_offload);
  }
}

TEST(Checkpoint, ExportsConsolidatedWeightsThatPythonReads) {
  TempDir dir;
  run_phase("ckpt_save_phase", 4, 1, "fp32", dir.path());
  ExportOptions o;
  const ExportReport st = export_checkpoint(dir.path(), dir / "model.safetensors", o);
  EXPECT_EQ(st.tensors, 6);
  o.format = ExportFormat::kTorch;
  export_checkpoint(dir.path(), dir / "model.pt", o);
  o.dtype = DType::kBFloat16;
  o.format = ExportFormat::kSafetensors;
  export_checkpoint(dir.path(), dir / "model_bf16.safetensors", o);

  // In C++: the export equals the assembled master weights.
  const auto master = full_state(dir / "saved", PieceState::kMaster);
  const ckpt::InputFile f(dir / "model.safetensors");
  const ckpt::SafetensorsHeader h = ckpt::read_safetensors_header(f);
  for (const auto& [name, t] : master) {
    const ckpt::TensorRecord* r = h.find(name);
    ASSERT_NE(r, nullptr) << name;
    at::Tensor back = at::empty(t.sizes(), at::kFloat);
    f.read_at(h.data_start + r->begin, back.data_ptr(), back.nbytes());
    EXPECT_TRUE(same_bits(back, t)) << name;
  }
  // The CLI does the same.
  const std::string cmd = testing::cli_path() + " checkpoint export " + dir.path() + " --out " +
                          (dir / "cli.safetensors") + " > /dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(ckpt::read_small_file(dir / "cli.safetensors"), ckpt::read_small_file(dir / "model.safetensors"));

  // inspect: 0 when every checksum verifies, 1 naming the file when one does not.
  const std::string inspect = testing::cli_path() + " checkpoint inspect " + dir.path();
  EXPECT_EQ(std::system((inspect + " > /dev/null").c_str()), 0);
  flip_byte(dir / "saved/rank_00002.safetensors", 100);
  const int status = std::system((inspect + " > " + (dir / "inspect.txt")).c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  const std::string report = ckpt::read_small_file(dir / "inspect.txt");
  EXPECT_NE(report.find("rank_00002.safetensors"), std::string::npos) << report;
  EXPECT_NE(report.find("VERIFICATION FAILED"), std::string::npos) << report;

  const std::string py = testing::python_path() + " " + testing::tests_dir() + "/checkpoint/read_export.py " +
                         dir.path();
  ASSERT_FALSE(testing::python_path().empty()) << "no Python with torch and safetensors was found";
  EXPECT_EQ(std::system(py.c_str()), 0) << py;
}

// save_16bit_model at stage 3 on 2 ranks: the ranks gather one unit at a
// time (seen through the engine's events) and rank 0 writes exactly what the
// export of a checkpoint of the same step holds. Without
// stage3_gather_16bit_weights_on_model_save it is refused, as DeepSpeed does.
// What this catches: a file written from released (or rank-local) storage,
// every unit gathered at once, or units left gathered after the save; a
// tied weight's second name read from a released unit.
ZT_WORKER(ckpt_stage3_model_file) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const std::string dir = env("CKPT_DIR");
  auto model = make_model(kModel);
  const Data data = make_data(*model, 2, kGlobalBatch);
  InitOptions io;
  io.communicator = comm;
  bool saving = false;
  int live = 0, most = 0;
  io.observer = [&](const EngineEvent& ev) {
    if (!saving) return;
    if (ev.kind == EngineEvent::Kind::kGatherDone) most = std::max(most, ++live);
    if (ev.kind == EngineEvent::Kind::kReleased) --live;
  };
  Engine e = initialize(model, case_config(3, "fp32", comm->world_size()), io);
  for (int s = 0; s < 2; ++s) engine_step(e, *model, data, s, kGlobalBatch / comm->world_size());
  e.save_checkpoint(dir, "saved");
  saving = true;
  e.save_16bit_model(dir, "live.safetensors");
  saving = false;
  checks.require(most == 1, "units gathered at once while saving: " + std::to_string(most));
  checks.require(live == 0, "units left gathered after the save: " + std::to_string(live));

  auto other = make_model(kModel);
  Engine refused = initialize(other, test_config(3, "fp32", kGlobalBatch / comm->world_size(), 1, 0.0,
                                                 [](nlohmann::json& j) {
                                                   j["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] =
                                                       false;
                                                 }),
                              io);
  const std::string err = error_of([&] { refused.save_16bit_model(dir, "refused.safetensors"); });
  checks.require(err.find("stage3_gather_16bit_weights_on_model_save") != std::string::npos, "refused: " + err);

  // A weight tied across two units is written under both its names, each
  // time from a gathered unit.
  auto tied = make_model(ModelKind::kTiedMarkedMlp);
  Engine te = initialize(tied, case_config(3, "fp32", comm->world_size()), io);
  const Data tied_data = make_data(*tied, 1, kGlobalBatch);
  engine_step(te, *tied, tied_data, 0, kGlobalBatch / comm->world_size());
  te.save_16bit_model(dir, "tied.safetensors");
  const at::Tensor master = te.full_fp32_param("l2.weight");
  if (comm->rank() == 0) {
    const std::map<std::string, at::Tensor> file = read_safetensors(dir + "/tied.safetensors");
    for (const char* name : {"l2.weight", "l3.weight"})
      checks.require(file.count(name) && same_bits(file.at(name), master),
                     std::string("tied weight written as ") + name);
  }
  return checks.exit_code();
}

TEST(Checkpoint, SavesTheModelFileAtStage3OneUnitAtATime) {
  TempDir dir;
  RankJob job;
  job.world_size = 2;
  job.worker = "ckpt_stage3_model_file";
  job.timeout = std::chrono::seconds(60);
  job.env = {{"CKPT_DIR", dir.path()}};
  ASSERT_TRUE(all_ranks_succeeded(run_ranks(job)));
  export_checkpoint(dir.path(), dir / "export.safetensors", ExportOptions{});
  const auto live = read_safetensors(dir / "live.safetensors");
  const auto exported = read_safetensors(dir / "export.safetensors");
  ASSERT_EQ(live.size(), 6u);
  ASSERT_EQ(exported.size(), live.size());
  for (const auto& [name, t] : live) EXPECT_TRUE(same_bits(t, exported.at(name))) << name;
  EXPECT_FALSE(ckpt::path_exists(dir / "refused.safetensors"));
}

}  // namespace
}  // namespace zerotrain::testing
