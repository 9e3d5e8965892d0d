// Activation checkpointing (include/zerotrain/activation_checkpointing.h):
// checkpointed and plain runs give bit-identical gradients with dropout in
// every layer, at stages 0-3 on N = 1 and 2 ranks, whether whole units are
// recomputed (InitOptions::recompute_units) or the model checkpoints pairs of
// units itself (checkpointing::checkpoint around two marked layers, so the
// units' triggers run inside the checkpoint and its recompute); and the
// activation bytes a forward keeps drop by exactly what the recomputed layers
// would have held, counted by an allocation counter.
//
// What this catches, each checked once by injecting it: the RNG state not
// restored for the recompute (other dropout masks: gradients differ); the
// recompute run as a forward (the engine then sees forwards in another order,
// and at stage 3 keeps units gathered after the step); a unit inside a
// checkpoint taken for skipped (no gradient); a checkpoint that keeps its
// function's graph alive (the byte count).

#include "checkpoint/checkpoint_util.h"
#include "comm/worker_util.h"
#include "engine/training.h"
#include "support/counting_allocator.h"
#include "support/multiprocess.h"

#include <zerotrain/activation_checkpointing.h>
#include <zerotrain/unit_module.h>

#include <ATen/CPUGeneratorImpl.h>

namespace zerotrain::testing {
namespace {

constexpr int64_t kMicro = 3;
constexpr int kGas = 2;

/// Linear, GELU and dropout: what a transformer's MLP keeps for backward.
struct DropBlockImpl : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  torch::nn::Dropout drop{nullptr};
  DropBlockImpl(int64_t in, int64_t out) {
    fc = register_module("fc", torch::nn::Linear(in, out));
    drop = register_module("drop", torch::nn::Dropout(0.25));
  }
  at::Tensor forward(const at::Tensor& x) { return drop(torch::gelu(fc(x))); }
};
TORCH_MODULE(DropBlock);
using MarkedBlock = zerotrain::Unit<DropBlock>;

/// Four marked blocks of odd widths 7 -> 13 -> 11 -> 9 -> 5. With `pairs`,
/// the forward checkpoints blocks (0, 1) and (2, 3) itself.
struct DropoutMlp : TestModel {
  std::vector<MarkedBlock> blocks;
  bool pairs = false;
  checkpointing::CheckpointOptions options;  // of the pairs' checkpoints
  explicit DropoutMlp(bool checkpoint_pairs) : pairs(checkpoint_pairs) {
    const int64_t widths[] = {7, 13, 11, 9, 5};
    for (int i = 0; i < 4; ++i)
      blocks.push_back(register_module("b" + std::to_string(i), MarkedBlock(widths[i], widths[i + 1])));
  }
  at::Tensor forward(const at::Tensor& x) override {
    if (!pairs) {
      at::Tensor h = x;
      for (auto& b : blocks) h = b->forward(h);
      return h;
    }
    at::Tensor h = checkpointing::checkpoint(options, [this](const at::Tensor& a) { return blocks[1]->forward(blocks[0]->forward(a)); }, x);
    return zerotrain::checkpoint(options, [this](const at::Tensor& a) { return blocks[3]->forward(blocks[2]->forward(a)); }, h);
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 7}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 5}; }
};

std::shared_ptr<DropoutMlp> make_dropout_mlp(bool pairs) {
  torch::manual_seed(5);
  return std::make_shared<DropoutMlp>(pairs);
}

enum class Mode { kPlain, kRecomputeUnits, kCheckpointPairs };

struct Grads {
  std::map<std::string, at::Tensor> grads;
  std::optional<checkpointing::CheckpointProfile::Totals> profile;
  int64_t forward_mismatches = 0;  // the engine's trace: forwards whose unit order differed from the first
  int64_t gathered_after = 0;      // full parameters held after the last step (stage 3: none)
};

/// Two optimizer steps (so the second backward recomputes with updated, and
/// at stage 3 re-gathered, weights); the gradients at the second boundary.
Grads run(const std::shared_ptr<Communicator>& comm, int stage, Mode mode, bool cpu_checkpointing) {
  auto model = make_dropout_mlp(mode == Mode::kCheckpointPairs);
  const int n = comm->world_size();
  const Data data = make_data(*model, 2, kMicro * kGas * n);
  InitOptions o;
  o.communicator = comm;
  o.recompute_units = mode == Mode::kRecomputeUnits;
  const Config config = test_config(stage, "fp32", kMicro, kGas, 0.05, [&](nlohmann::json& j) {
    if (mode != Mode::kPlain) j["activation_checkpointing"] = {{"cpu_checkpointing", cpu_checkpointing}, {"profile", true}};
  });
  Engine e = initialize(model, config, o);
  torch::manual_seed(100 + comm->rank());  // the same dropout stream in every mode
  // The model's own checkpoints take the config's options as the engine's units do.
  model->options = checkpointing::CheckpointOptions::from_config(config.activation_checkpointing());  // the same dropout stream in every mode
  Grads out;
  for (int step = 0; step < 2; ++step)
    for (int k = 0; k < kGas; ++k) {
      e.backward(torch::mse_loss(model->forward(rows(data.x[step], e.rank(), n, kMicro, k)),
                                 rows(data.y[step], e.rank(), n, kMicro, k)));
      if (step == 1 && k + 1 == kGas)
        for (const auto& [name, t] : unique_parameters(*model)) out.grads[name] = e.full_grad(name);
      e.step();
    }
  out.forward_mismatches = e.execution_trace().forward_mismatches;
  out.gathered_after = e.memory_report().gathered_parameters;
  out.profile = mode == Mode::kCheckpointPairs ? (model->options.profile
                                                      ? std::make_optional(model->options.profile->totals())
                                                      : std::nullopt)
                                                : e.checkpoint_profile();
  return out;
}

ZT_WORKER(checkpointed_gradients) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  for (int stage = 0; stage <= 3; ++stage) {
    const Grads plain = run(comm, stage, Mode::kPlain, false);
    checks.require(!plain.profile.has_value(), "profile reported without the config's profile");
    for (const Mode mode : {Mode::kRecomputeUnits, Mode::kCheckpointPairs}) {
      const bool cpu = stage == 2;  // cpu_checkpointing once (on this machine the inputs stay in place)
      const Grads ckpt = run(comm, stage, mode, cpu);
      const std::string at = "stage " + std::to_string(stage) +
                             (mode == Mode::kRecomputeUnits ? " recompute_units: " : " checkpointed pairs: ");
      checks.require(plain.grads.size() == ckpt.grads.size() && plain.grads.size() == 8, at + "parameters");
      for (const auto& [name, g] : plain.grads)
        checks.require(same_bits(g, ckpt.grads.at(name)), at + "gradient of " + name + " differs by " +
                                                              std::to_string((g - ckpt.grads.at(name)).abs().max().item<double>()));
      // A recompute is not a forward: the order the engine saw stays the
      // first forward's, and at stage 3 every unit is released after its backward.
      checks.require(ckpt.forward_mismatches == 0, at + std::to_string(ckpt.forward_mismatches) +
                                                       " forwards seen in another order");
      checks.require(ckpt.gathered_after == plain.gathered_after,
                     at + std::to_string(ckpt.gathered_after) + " B gathered after the step, plain " +
                         std::to_string(plain.gathered_after));
      // Every checkpointed forward of the 2 x kGas micro-batches was recomputed once.
      const int64_t per_forward = mode == Mode::kRecomputeUnits ? 4 : 2;
      checks.require(ckpt.profile.has_value() && ckpt.profile->forwards == per_forward * 2 * kGas &&
                         ckpt.profile->recomputes == ckpt.profile->forwards,
                     at + "profile counts " + (ckpt.profile ? std::to_string(ckpt.profile->forwards) + " forwards, " +
                                                                  std::to_string(ckpt.profile->recomputes) + " recomputes"
                                                            : std::string("missing")));
    }
  }
  return checks.exit_code();
}

TEST(ActivationCheckpointing, SameGradientsAsPlainEveryStageOneRank) {
  expect_worker_succeeds("checkpointed_gradients", 1, std::chrono::seconds(120));
}
TEST(ActivationCheckpointing, SameGradientsAsPlainEveryStageTwoRanks) {
  expect_worker_succeeds("checkpointed_gradients", 2, std::chrono::seconds(180));
}

/// The bytes a block's forward keeps for backward beyond its output:
/// measured on a lone copy of the block, with and without grad.
int64_t saved_by_block(int64_t in, int64_t out, int64_t batch, CountingAllocator& counter) {
  DropBlock block(in, out);
  const at::Tensor x = torch::randn({batch, in});
  const auto held = [&](bool grad) {
    at::AutoGradMode mode(grad);
    const int64_t before = counter.live();
    at::Tensor y = block->forward(x);
    return counter.live() - before;
  };
  return held(true) - held(false);
}

TEST(ActivationCheckpointing, ForwardKeepsWhatTheRecomputedLayersWouldHaveHeldLess) {
  CountingAllocator& counter = CountingAllocator::install();
  const int64_t batch = 256;
  int64_t expected = 0;
  const int64_t widths[] = {7, 13, 11, 9, 5};
  for (int i = 0; i < 4; ++i) expected += saved_by_block(widths[i], widths[i + 1], batch, counter);
  // Each checkpoint keeps the CPU generator's state for its recompute.
  at::Generator g = at::detail::getDefaultCPUGenerator();
  const int64_t rng_bytes = static_cast<int64_t>(g.get_state().nbytes());
  ASSERT_GT(expected, 4 * rng_bytes);

  const auto kept_by_forward = [&](bool recompute) {
    auto model = make_dropout_mlp(false);
    InitOptions o;
    o.communicator = one_rank_communicator();
    o.recompute_units = recompute;
    Engine e = initialize(model, test_config(0, "fp32", batch, 1, 0.0), o);
    const at::Tensor x = torch::randn({batch, 7}), y = torch::randn({batch, 5});
    e.backward(torch::mse_loss(model->forward(x), y));  // warm-up: the engine's lazy state
    e.step();
    const int64_t before = counter.live();
    at::Tensor loss = torch::mse_loss(model->forward(x), y);
    const int64_t kept = counter.live() - before;
    e.backward(loss);
    e.step();
    return kept;
  };
  const int64_t plain = kept_by_forward(false);
  const int64_t recomputed = kept_by_forward(true);
  EXPECT_EQ(plain - recomputed, expected - 4 * rng_bytes)
      << "plain forward kept " << plain << " B, recomputed " << recomputed << " B; the four blocks save "
      << expected << " B beyond their outputs";
}

}  // namespace
}  // namespace zerotrain::testing
