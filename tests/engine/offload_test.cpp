// Optimizer and parameter offload (Note [Offload keeps the step on the host]
// in src/zero/owned_state.h): on N = 1 and 2 ranks, at stages 1-3, with
// gradient accumulation and clipping active, the offloaded run and the plain
// run end bit for bit equal in parameters, master weights and both moments.
// On this CPU-only machine the host and the device are the same memory, but
// the offloaded run still goes through the host gradient copy, the staging
// buffer copied back tile by tile on the copy thread, and (offload_param) a
// host parameter shard copied into each gather, so each of those is checked.
//
// What this catches, each checked once by injecting it: the host gradients
// copied before the boundary's last micro-batch is reduced (the update then
// sees one micro-batch fewer); a staging tile not copied back (the model
// keeps the old weights there); a gather that reads the device slot instead
// of the host shard (the all-gather then spreads stale values). The plain run
// is itself compared with LibTorch's AdamW in parity_test.cpp.

#include "checkpoint/checkpoint_util.h"
#include "comm/worker_util.h"
#include "engine/training.h"
#include "support/multiprocess.h"

#include <map>

namespace zerotrain::testing {
namespace {

constexpr int kSteps = 3;
constexpr int64_t kMicro = 2;
constexpr int kGas = 2;

struct OffloadCase {
  int stage;
  const char* dtype;
  const char* optimizer;  // "AdamW" or "Lamb"
  bool offload_params;    // with offload_param as well (stage 3)
  int64_t sub_group_size;  // stage 3: several tiles per step when small
};

struct Outcome {
  std::map<std::string, at::Tensor> params, master, exp_avg, exp_avg_sq;
  MemoryReport memory;
};

Config offload_case_config(const OffloadCase& c, bool offload) {
  return test_config(c.stage, c.dtype, kMicro, kGas, /*clipping=*/0.05, [&](nlohmann::json& j) {
    j["optimizer"]["type"] = c.optimizer;
    j["optimizer"]["params"]["weight_decay"] = 0.1;
    auto& z = j["zero_optimization"];
    if (c.stage == 3) z["sub_group_size"] = c.sub_group_size;
    if (!offload) return;
    z["offload_optimizer"] = {{"device", "cpu"}, {"pin_memory", true}};
    if (c.offload_params) z["offload_param"] = {{"device", "cpu"}};
  });
}

Outcome train(const std::shared_ptr<Communicator>& comm, const Config& config) {
  auto model = make_model(ModelKind::kMarkedOddMlp);
  const Data data = make_data(*model, kSteps, kMicro * kGas * comm->world_size());
  InitOptions o;
  o.communicator = comm;
  Engine e = initialize(model, config, o);
  for (int s = 0; s < kSteps; ++s) engine_step(e, *model, data, s, kMicro);
  Outcome out;
  out.params = snapshot(e, *model);
  for (const auto& [name, t] : unique_parameters(*model)) {
    out.master[name] = e.full_fp32_param(name);
    out.exp_avg[name] = e.full_optimizer_state(name, "exp_avg");
    out.exp_avg_sq[name] = e.full_optimizer_state(name, "exp_avg_sq");
  }
  out.memory = e.memory_report();
  return out;
}

ZT_WORKER(offload_parity) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  for (const OffloadCase& c : {OffloadCase{1, "fp32", "AdamW", false, 0}, OffloadCase{2, "bf16", "AdamW", false, 0},
                               OffloadCase{2, "fp16", "Lamb", false, 0}, OffloadCase{3, "fp32", "AdamW", false, 37},
                               OffloadCase{3, "bf16", "AdamW", true, 1000000000},
                               OffloadCase{3, "bf16", "Lamb", true, 1000000000}}) {
    const std::string at = "stage " + std::to_string(c.stage) + " " + c.dtype + " " + c.optimizer +
                           (c.offload_params ? " +offload_param" : "") + ": ";
    const Outcome plain = train(comm, offload_case_config(c, false));
    const Outcome off = train(comm, offload_case_config(c, true));
    checks.require(plain.params.size() == off.params.size(), at + "same parameters");
    for (const auto& [name, t] : plain.params) {
      checks.require(same_bits(t, off.params.at(name)), at + "parameter " + name + " differs");
      checks.require(same_bits(plain.master.at(name), off.master.at(name)), at + "master " + name + " differs");
      checks.require(same_bits(plain.exp_avg.at(name), off.exp_avg.at(name)), at + "exp_avg " + name + " differs");
      checks.require(same_bits(plain.exp_avg_sq.at(name), off.exp_avg_sq.at(name)),
                     at + "exp_avg_sq " + name + " differs");
    }
    // The report says where the bytes went.
    const MemoryReport& p = plain.memory;
    const MemoryReport& o = off.memory;
    checks.require(p.host == 0 && p.offload_buffers == 0, at + "plain run reports host bytes");
    checks.require(o.master_weights == p.master_weights && o.optimizer_states == p.optimizer_states,
                   at + "the offloaded state has another size");
    const int64_t shard = c.offload_params ? o.parameter_shard : 0;
    checks.require(o.host == o.master_weights + o.optimizer_states + o.offload_buffers + shard,
                   at + "host bytes " + std::to_string(o.host) + " are not the offloaded state");
    // fp32 gradient copy, plus model-dtype staging unless the shard itself is on the host.
    const int64_t owned = o.optimizer_states / 8;  // two fp32 moments per owned element
    const int64_t staging = c.offload_params ? 0 : owned * (std::string(c.dtype) == "fp32" ? 4 : 2);
    checks.require(o.offload_buffers == owned * 4 + staging,
                   at + "offload buffers " + std::to_string(o.offload_buffers) + " B");
  }
  return checks.exit_code();
}

TEST(Offload, MatchesThePlainRunBitwiseOneRank) {
  expect_worker_succeeds("offload_parity", 1, std::chrono::seconds(120));
}
TEST(Offload, MatchesThePlainRunBitwiseTwoRanks) {
  expect_worker_succeeds("offload_parity", 2, std::chrono::seconds(180));
}

// The offload configs in configs/ train on the engine as they are (only the
// batch size follows the test): the loss falls and the state is in host memory.
ZT_WORKER(offload_example_configs) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  for (const char* file : {"zero2_offload_optimizer_bf16.json", "zero3_offload_param_bf16.json",
                           "zero3_offload_checkpointing_gpt.json"}) {
    nlohmann::json j = load_config_json(file);
    j.erase("scheduler");
    j.erase("csv_monitor");
    j.erase("tensorboard");
    j.erase("steps_per_print");
    j["train_micro_batch_size_per_gpu"] = kMicro;
    j["gradient_accumulation_steps"] = kGas;
    j["optimizer"]["params"]["lr"] = 1e-2;
    auto model = make_model(ModelKind::kMarkedOddMlp);
    const Data data = make_data(*model, 1, kMicro * kGas * comm->world_size());
    InitOptions o;
    o.communicator = comm;
    o.recompute_units = j.contains("activation_checkpointing");
    Engine e = initialize(model, Config::from_json(j), o);
    const at::ScalarType dt = model_dtype(e.config());
    const auto loss = [&] {
      c10::NoGradGuard no_grad;
      return torch::mse_loss(model->forward(data.x[0].to(dt)).to(at::kFloat), data.y[0]).item<double>();
    };
    const double before = loss();
    for (int s = 0; s < 10; ++s) engine_step(e, *model, data, 0, kMicro);
    const double after = loss();
    checks.require(after < 0.9 * before, std::string(file) + ": loss " + std::to_string(before) + " -> " +
                                             std::to_string(after));
    checks.require(e.memory_report().host > 0, std::string(file) + ": nothing in host memory");
  }
  return checks.exit_code();
}

TEST(Offload, TheExampleConfigsTrain) {
  expect_worker_succeeds("offload_example_configs", 2, std::chrono::seconds(120));
}

}  // namespace
}  // namespace zerotrain::testing
