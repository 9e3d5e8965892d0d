// The engine's CUDA path at one rank beyond stages 0-2 (api_test.cpp's
// EngineCuda): stage 3's gathers and releases on device memory, optimizer and
// parameter offload between device and host, and activation checkpointing's
// CUDA RNG restore. Each skips without a GPU; scripts/gpu_check.sh runs them.

#include "engine/training.h"
#include "comm/worker_util.h"
#include "support/multiprocess.h"

#include <zerotrain/activation_checkpointing.h>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#if defined(ZEROTRAIN_WITH_CUDA)
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#endif

namespace zerotrain::testing {
namespace {

constexpr int64_t kMicro = 4;

struct CudaCase {
  int stage;
  const char* dtype;
  bool offload_optimizer;
  bool offload_param;
};

std::string name(const CudaCase& c) {
  return "stage " + std::to_string(c.stage) + " " + c.dtype +
         (c.offload_optimizer ? " +offload_optimizer" : "") + (c.offload_param ? " +offload_param" : "");
}

/// kMarkedOddMlp on the GPU trained `steps` steps by an engine with
/// `config` on `comm`, and the same model trained by the reference
/// (LibTorch's AdamW on the CPU, fp32) on the same global batches.
struct TrainedPair {
  std::shared_ptr<TestModel> model;
  Engine engine;
  std::shared_ptr<TestModel> ref;
  std::vector<double> ref_norms;  // pre-clip, per step
};

TrainedPair train_pair(const Config& config, std::shared_ptr<Communicator> comm, int steps) {
  auto model = make_model(ModelKind::kMarkedOddMlp);
  model->to(torch::kCUDA);
  const Data data = make_data(*model, steps, config.batch().train_batch_size);
  InitOptions o;
  o.communicator = std::move(comm);
  Engine e = initialize(model, config, o);
  for (int s = 0; s < steps; ++s) engine_step(e, *model, data, s, config.batch().micro_batch_per_gpu);
  auto ref = make_model(ModelKind::kMarkedOddMlp);
  std::vector<double> norms = reference_train(*ref, config, data, steps);
  return {model, std::move(e), ref, std::move(norms)};
}

/// The engine's full weights as fp32 on the CPU (stage 3 holds them only
/// inside a gather).
std::map<std::string, at::Tensor> full_weights(TrainedPair& t) {
  std::map<std::string, at::Tensor> got;
  GatheredParameters full = t.engine.gathered_parameters();
  for (const auto& item : t.model->named_parameters()) got[item.key()] = item.value().detach().cpu().to(at::kFloat);
  return got;
}

// Against LibTorch's AdamW on the CPU in fp32 over the full batch, with two
// micro-batches accumulated and clipping at 0.5 (the pre-clip norm is above
// it). Catches a missing 1/GAS: injected once into the engine and run on an
// H200 (2026-11-30), every case failed.
TEST(EngineCuda, Stage3AndOffloadOneRankMatchLibTorchAdamW) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto comm = one_rank_communicator("nccl");
  const int steps = 8;
  const int64_t gas = 2;
  for (const CudaCase& c : {CudaCase{3, "fp32", false, false}, CudaCase{3, "bf16", false, false},
                            CudaCase{2, "bf16", true, false}, CudaCase{3, "fp32", true, true},
                            CudaCase{3, "bf16", true, true}}) {
    SCOPED_TRACE(name(c));
    const Config config = test_config(c.stage, c.dtype, kMicro, gas, 0.5, [&](nlohmann::json& j) {
      if (c.offload_optimizer) j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"}, {"pin_memory", true}};
      if (c.offload_param) j["zero_optimization"]["offload_param"] = {{"device", "cpu"}, {"pin_memory", true}};
    });
    TrainedPair t = train_pair(config, comm, steps);
    ASSERT_GT(t.ref_norms.front(), 0.5) << "clipping must be active";
    const bool fp32 = std::string(c.dtype) == "fp32";
    const double rtol = fp32 ? 1e-5 : 1.0 / 128;
    const double atol = fp32 ? 1e-6 : 0.25 * steps * config.optimizer()->lr;
    const std::map<std::string, at::Tensor> got = full_weights(t);
    for (const auto& item : t.ref->named_parameters())
      EXPECT_TRUE(at::allclose(got.at(item.key()), item.value(), rtol, atol)) << item.key();
    Engine& e = t.engine;
    EXPECT_EQ(e.skipped_steps(), 0);
    if (c.offload_optimizer) {
      EXPECT_GT(e.memory_report().host, 0);
    }
  }
}

// Two ranks share the one GPU, Gloo carrying the CUDA tensors (backend
// "gloo"), so the reducer's buckets, streams and events, the sharded step and
// stage 3's gathers run at N = 2 where NCCL would need a second GPU. Stages 2
// and 3, bf16, overlap_comm, two micro-batches and clipping at 0.5, against
// LibTorch's AdamW on the full global batch (CPU, fp32). Catches gradients
// not reduced across ranks (each rank stepping on its half of the batch) and
// a shard gathered from the wrong rank. Written without a GPU: not yet run,
// and no bug injected yet.
ZT_WORKER(engine_cuda_gloo_shared_gpu) {
  DistributedOptions d;
  d.backend = "gloo";
  auto comm = init_distributed(d);
  RankChecks checks(comm->rank());
  const int steps = 6;
  const int64_t gas = 2;
  for (int stage : {2, 3}) {
    const Config config = test_config(stage, "bf16", kMicro, gas, 0.5, [](nlohmann::json& j) {
      j["zero_optimization"]["overlap_comm"] = true;
    });
    TrainedPair t = train_pair(config, comm, steps);
    checks.require(t.ref_norms.front() > 0.5, "clipping must be active");
    const std::map<std::string, at::Tensor> got = full_weights(t);
    for (const auto& item : t.ref->named_parameters())
      checks.elementwise(got.at(item.key()), item.value(), 1.0 / 128, 0.25 * steps * config.optimizer()->lr,
                         "stage " + std::to_string(stage) + " " + item.key());
  }
  return checks.exit_code();
}

TEST(EngineCuda, TwoRanksShareOneGpuThroughGloo) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_worker_succeeds("engine_cuda_gloo_shared_gpu", 2, std::chrono::seconds(180));
}

// The recompute of a checkpointed block draws the same dropout mask on the
// GPU as its forward did. Catches the CUDA generator not saved and restored
// (only the CPU one): injected once and run on an H200 (2026-11-30), both
// gradients differed.
TEST(EngineCuda, CheckpointRestoresTheCudaRng) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(3);
  torch::nn::Linear lin(64, 64);
  torch::nn::Dropout drop(0.5);
  lin->to(torch::kCUDA);
  const at::Tensor x = torch::randn({32, 64}, torch::kCUDA).requires_grad_();
  auto block = [&](const at::Tensor& h) { return drop->forward(torch::gelu(lin->forward(h))); };
  auto grads = [&](bool checkpointed) {
    lin->zero_grad();
    x.mutable_grad() = at::Tensor();
    torch::cuda::manual_seed(17);
    at::Tensor y = checkpointed ? zerotrain::checkpoint(block, x) : block(x);
    // Another draw between forward and backward, as the next layer's dropout would.
    (void)torch::rand({1024}, torch::kCUDA);
    y.pow(2).sum().backward();
    return std::vector<at::Tensor>{lin->weight.grad().clone(), x.grad().clone()};
  };
  const auto plain = grads(false);
  const auto ckpt = grads(true);
  EXPECT_TRUE(at::equal(plain[0], ckpt[0]));
  EXPECT_TRUE(at::equal(plain[1], ckpt[1]));
}

#if defined(ZEROTRAIN_WITH_CUDA)
// Counts the host-device synchronisations c10 reports in its sync debug mode
// (a warning at every synchronising CUDA call: a blocking copy, .item(), a
// stream or device synchronize).
class SyncCounter : public c10::WarningHandler {
 public:
  SyncCounter() : guard_(this) { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN); }
  ~SyncCounter() override { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED); }
  SyncCounter(const SyncCounter&) = delete;
  SyncCounter& operator=(const SyncCounter&) = delete;
  void process(const c10::Warning& w) override {
    if (w.msg().find("synchronizing CUDA operation") != std::string::npos) ++count;
  }
  int count = 0;

 private:
  c10::WarningUtils::WarningHandlerGuard guard_;
};

// Note [The step's scalars stay on the device] and Note [The overflow
// decision is read a step late]: whole training steps (forward, accumulated
// backwards, step) make no synchronising CUDA call that c10 reports (a
// blocking copy, .item(), a stream or device synchronize), in fp32, in bf16
// with and without check_grad_overflow, at stages 2 and 3, and in fp16. The
// norm and the overflow decision reach the host through pinned memory behind
// an event: a dynamic fp16 scale waits for that event each step (not counted
// here), the others a step late. Catches the norm read with .item() in the
// step (the engine before the notes: one sync per step in every dtype) and
// stage 3's request rounds on the GPU (two per round).
TEST(EngineCuda, StepMakesNoHostSync) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto comm = one_rank_communicator("nccl");
  struct Case {
    int stage;
    const char* dtype;
    bool check_overflow;
  };
  for (const Case& c : {Case{2, "bf16", true}, Case{2, "bf16", false}, Case{3, "bf16", true}, Case{2, "fp32", false},
                        Case{2, "fp16", true}}) {
    SCOPED_TRACE(std::string("stage ") + std::to_string(c.stage) + " " + c.dtype +
                 (c.check_overflow ? " checked" : ""));
    const int64_t gas = 2;
    const Config config = test_config(c.stage, c.dtype, kMicro, gas, 0.5, [&](nlohmann::json& j) {
      j["steps_per_print"] = 1000;  // the report line reads values: not in the counted steps
      j["wall_clock_breakdown"] = false;
      if (std::string(c.dtype) == "bf16") j["bf16"]["check_grad_overflow"] = c.check_overflow;
    });
    auto model = make_model(ModelKind::kMarkedOddMlp);
    model->to(torch::kCUDA);
    const at::ScalarType dt = model_dtype(config);
    const int steps = 5, warm_up = 2;  // the first steps check orders across ranks (host reads)
    Data data = make_data(*model, steps, kMicro * gas);
    for (auto& x : data.x) x = x.to(torch::kCUDA, dt);  // blocking copies, before the count
    for (auto& y : data.y) y = y.to(torch::kCUDA);
    InitOptions o;
    o.communicator = comm;
    Engine e = initialize(model, config, o);
    auto run = [&](int step) {
      for (int64_t k = 0; k < gas; ++k) {
        at::Tensor loss = torch::mse_loss(model->forward(rows(data.x[step], 0, 1, kMicro, static_cast<int>(k)))
                                              .to(at::kFloat),
                                          rows(data.y[step], 0, 1, kMicro, static_cast<int>(k)));
        e.backward(loss);
        e.step();
      }
    };
    for (int s = 0; s < warm_up; ++s) run(s);
    int step_syncs = 0;
    {
      SyncCounter counter;
      for (int s = warm_up; s < steps; ++s) run(s);
      step_syncs = counter.count;
      ASSERT_TRUE(e.global_grad_norm().has_value());
      EXPECT_GT(*e.global_grad_norm(), 0.0);
      EXPECT_EQ(counter.count, step_syncs) << "the norm is read through pinned memory";
    }
    EXPECT_EQ(step_syncs, 0);
    EXPECT_EQ(e.skipped_steps(), 0);
  }
}

// Note [Reductions run on the backward's stream]: training with a side
// stream current gives bitwise the weights of training on the default stream
// (stage 2, bf16, overlap_comm, two micro-batches accumulated, clipping).
// Catches reductions packed or retired on another stream than the one the
// gradients were made on (a race: it shows as other weights when that stream
// lags).
TEST(EngineCuda, TrainingOnASideStreamMatchesTheDefaultStream) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto comm = one_rank_communicator("nccl");
  const Config config = test_config(2, "bf16", kMicro, 2, 0.5, [](nlohmann::json& j) {
    j["zero_optimization"]["overlap_comm"] = true;
  });
  auto train = [&](bool side_stream) {
    auto model = make_model(ModelKind::kMarkedOddMlp);
    model->to(torch::kCUDA);
    const Data data = make_data(*model, 4, kMicro * 2);
    InitOptions o;
    o.communicator = comm;
    Engine e = initialize(model, config, o);
    std::vector<at::Tensor> weights;
    {
      std::optional<c10::cuda::CUDAStreamGuard> guard;
      if (side_stream) guard.emplace(c10::cuda::getStreamFromPool());
      for (int s = 0; s < 4; ++s) engine_step(e, *model, data, s, kMicro);
      for (const auto& p : model->parameters()) weights.push_back(p.detach().cpu());
    }
    return weights;
  };
  const std::vector<at::Tensor> plain = train(false), side = train(true);
  ASSERT_EQ(plain.size(), side.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(at::equal(plain[i], side[i])) << "parameter " << i;
}
#endif

}  // namespace
}  // namespace zerotrain::testing
