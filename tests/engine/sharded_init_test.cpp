// zerotrain::ShardedInit (DeepSpeed's zero.Init): a model built in the scope
// is never whole on a rank, trains exactly as the same model built whole, and
// fits under a per-process memory cap that the whole model's training state
// exceeds (an allocation counter that knows nothing of the engine measures
// it). Errors name what is wrong.

#include "checkpoint/checkpoint_util.h"
#include "comm/worker_util.h"
#include "engine/training.h"
#include "support/counting_allocator.h"
#include "support/multiprocess.h"

#include <zerotrain/sharded_init.h>
#include <zerotrain/unit_module.h>

#include <cstdio>

namespace zerotrain::testing {
namespace {

constexpr int kLayers = 16;
constexpr int64_t kWidth = 383;  // odd: each layer's pieces and shards are padded
constexpr int64_t kMicro = 2;
constexpr int64_t kLayerNumel = kWidth * kWidth + kWidth;

/// Sixteen marked layers and an unmarked head (the root unit, built whole).
struct ShardedStack : TestModel {
  torch::nn::ModuleList layers{nullptr};
  torch::nn::Linear head{nullptr};
  ShardedStack() {
    layers = register_module("layers", torch::nn::ModuleList());
    for (int i = 0; i < kLayers; ++i) layers->push_back(zerotrain::Unit<torch::nn::Linear>(kWidth, kWidth));
    head = register_module("head", torch::nn::Linear(kWidth, 5));
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = x;
    for (const auto& l : *layers) h = torch::tanh(l->as<zerotrain::Unit<torch::nn::Linear>>()->forward(h));
    return head->forward(h);
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, kWidth}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 5}; }
};

int64_t model_numel() { return kLayers * kLayerNumel + kWidth * 5 + 5; }

Config stack_config(const std::string& dtype) {
  return test_config(3, dtype, kMicro, 2, 0.05, [](nlohmann::json& j) {
    auto& z = j["zero_optimization"];
    z["stage3_prefetch_bucket_size"] = kLayerNumel;
    z["stage3_max_reuse_distance"] = 0;
  });
}

struct Run {
  int64_t build_peak = 0;  // bytes above those live before the model was built
  int64_t peak = 0;        // through initialize and three steps
  std::map<std::string, at::Tensor> masters;
};

/// Builds the model (in a ShardedInit scope or whole), initializes and trains
/// three steps, measuring the allocation counter.
Run build_and_train(const std::shared_ptr<Communicator>& comm, const std::string& dtype, bool sharded,
                    CountingAllocator& alloc, const Data& data) {
  const Config config = stack_config(dtype);
  alloc.reset_peak();
  const int64_t before = alloc.live();
  Run run;
  std::shared_ptr<ShardedStack> model;
  InitOptions o;
  o.communicator = comm;
  {
    torch::manual_seed(comm->rank() + 5);  // rank 0's values must win either way
    std::unique_ptr<ShardedInit> scope = sharded ? std::make_unique<ShardedInit>(comm, config) : nullptr;
    model = std::make_shared<ShardedStack>();
    if (scope) {
      scope->finish();
      o.sharded_init = scope->parameters();
    }
  }
  run.build_peak = alloc.peak() - before;
  {
    Engine e = initialize(model, config, o);
    for (int step = 0; step < 3; ++step) engine_step(e, *model, data, step, kMicro);
    run.peak = alloc.peak() - before;
    for (const auto& [name, t] : unique_parameters(*model)) run.masters[name] = e.full_fp32_param(name);
  }
  return run;
}

// Note [Sharded at creation] on N ranks. Built in the scope, the model trains
// bitwise as the same model built whole (fp32 and bf16; the ranks seed
// differently, so both must take rank 0's values), with clipping and
// accumulation active. Building holds the pieces and about one layer, never
// the model; at N = 4 the whole run (initialize and three steps) stays under
// a cap of half the model's unsharded training state (parameters, gradients
// and Adam's moments: 16 bytes per fp32 parameter), which the same model
// built whole exceeds. What this catches: pieces taken from each rank's own
// values (no broadcast), a piece cut at the wrong offset or unpadded, pieces
// gathered into the wrong slots, parameters not freed after sharding, units
// left gathered after initialize, and a dtype cast skipped.
ZT_WORKER(sharded_init) {
  CountingAllocator& alloc = CountingAllocator::install();
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int world = comm->world_size();
  const int64_t layer_bytes = kLayerNumel * 4;
  const int64_t model_bytes = model_numel() * 4;
  for (const std::string dtype : {"fp32", "bf16"}) {
    const Data data = make_data(ShardedStack(), 3, kMicro * 2 * world);
    const Run sharded = build_and_train(comm, dtype, true, alloc, data);
    const Run whole = build_and_train(comm, dtype, false, alloc, data);
    for (const auto& [name, t] : whole.masters)
      checks.require(same_bits(sharded.masters.at(name), t), dtype + ": " + name + " trains as when built whole");
    if (dtype != "fp32") continue;
    const int64_t pieces = model_bytes / world;
    const int64_t cap = 16 * model_numel() / 2;
    if (comm->rank() == 0)
      std::printf("N=%d: model %.2f MB; building: %.2f MB in the scope, %.2f MB whole; whole run: %.2f MB sharded "
                  "at creation, %.2f MB built whole; cap %.2f MB\n",
                  world, model_bytes / 1e6, sharded.build_peak / 1e6, whole.build_peak / 1e6, sharded.peak / 1e6,
                  whole.peak / 1e6, cap / 1e6);
    checks.require(sharded.build_peak <= pieces * 21 / 20 + 2 * layer_bytes,
                   "building in the scope holds the pieces and about one layer: " +
                       std::to_string(sharded.build_peak) + " bytes");
    checks.require(whole.build_peak >= model_bytes, "built whole, the model is whole");
    if (world == 4) {
      checks.require(sharded.peak <= cap, "sharded at creation, the run fits the cap: " +
                                              std::to_string(sharded.peak) + " of " + std::to_string(cap) + " bytes");
      checks.require(whole.peak > cap, "built whole, the same run exceeds the cap: " + std::to_string(whole.peak));
    }
  }

  // Errors name what is wrong.
  const std::string stage2 = error_of([&] { ShardedInit s(comm, test_config(2, "fp32", kMicro, 1, 0.0)); });
  checks.require(stage2.find("stage is 2") != std::string::npos, "stage 2: " + stage2);
  {
    const Config config = stack_config("fp32");
    auto scope = std::make_unique<ShardedInit>(comm, config);
    auto model = std::make_shared<ShardedStack>();
    scope->finish();
    model->layers[3]->as<zerotrain::Unit<torch::nn::Linear>>()->bias.requires_grad_(false);
    InitOptions o;
    o.communicator = comm;
    o.sharded_init = scope->parameters();
    const std::string frozen = error_of([&] { initialize(model, config, o); });
    checks.require(frozen.find("'layers.3.bias'") != std::string::npos, "frozen after the scope: " + frozen);
    const std::string bf16 = error_of([&] { initialize(model, stack_config("bf16"), o); });
    checks.require(bf16.find("model dtype") != std::string::npos, "another dtype: " + bf16);
  }
  return checks.exit_code();
}

TEST(ShardedInit, TwoRanks) { expect_worker_succeeds("sharded_init", 2, std::chrono::seconds(120), true); }
TEST(ShardedInit, FourRanks) { expect_worker_succeeds("sharded_init", 4, std::chrono::seconds(180), true); }

}  // namespace
}  // namespace zerotrain::testing
