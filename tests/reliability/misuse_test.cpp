// Misuse: what a training loop can get wrong, each a clear error or a
// documented, tested behaviour (docs/reliability.md, "Misuse"), never a hang
// or silently wrong training. Ranks that disagree about the config or the
// model (Note [Every rank starts from the same model and config]), a second
// backward() or a step() without one, parameters unused on some ranks, a
// world size that does not divide the batch, and a checkpoint loaded under
// another gradient_accumulation_steps.

#include "checkpoint/checkpoint_util.h"
#include "comm/worker_util.h"
#include "engine/training.h"
#include "reliability/sized_model.h"
#include "support/multiprocess.h"

#include <gtest/gtest.h>

namespace zerotrain::testing {
namespace {

constexpr int64_t kMicro = 2;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string what_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- Ranks that disagree --------------------------------------------------------

// Rank 1 runs another lr, then another model shape, then a world size that
// does not divide train_batch_size: every rank raises the same error at
// initialize(), naming the key or the parameter. What this catches: no
// agreement check (rank 1 trains at its own lr: no error at all), a check
// run on rank 0 only (rank 1 then hangs in its first collective, the test's
// timeout), and a mismatch reported without the key.
ZT_WORKER(ranks_disagree) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  const bool odd = comm->rank() == 1;
  InitOptions io;
  io.communicator = comm;
  {
    auto model = make_model(ModelKind::kMlp);
    const Config config = test_config(2, "fp32", kMicro, 1, 0.0, [&](nlohmann::json& j) {
      if (odd) j["optimizer"]["params"]["lr"] = 3e-3;
    });
    try {
      initialize(model, config, io);
      c.require(false, "configs with different lr must not initialize");
    } catch (const ConfigError& e) {
      std::cout << "rank " << comm->rank() << ": " << e.what() << "\n";
      c.require(e.problems().size() == 1 && e.problems()[0].path == "optimizer.params.lr", "path names the lr");
      c.require(contains(e.what(), "rank 0 has 0.002") && contains(e.what(), "rank 1 has 0.003"),
                "message gives both values");
    }
  }
  {
    auto model = std::make_shared<Sized>(odd ? 17 : 16);
    try {
      initialize(model, test_config(3, "fp32", kMicro, 1, 0.0), io);
      c.require(false, "different models must not initialize");
    } catch (const c10::Error& e) {
      std::cout << "rank " << comm->rank() << ": " << e.what_without_backtrace() << "\n";
      c.require(contains(e.what(), "the model differs between ranks") && contains(e.what(), "'l1.weight ["),
                "names the first differing parameter");
    }
  }
  {
    auto model = make_model(ModelKind::kMlp);
    const Config config = test_config(1, "fp32", kMicro, 1, 0.0, [](nlohmann::json& j) {
      j.erase("train_micro_batch_size_per_gpu");
      j["train_batch_size"] = 5;
    });
    try {
      initialize(model, config, io);
      c.require(false, "train_batch_size 5 on 2 ranks must not initialize");
    } catch (const ConfigError& e) {
      c.require(contains(e.what(), "train_batch_size"), std::string("names train_batch_size: ") + e.what());
    }
  }
  return c.exit_code();
}

// Each rank initialises from its own seed: initialize() warns on rank 0,
// naming a parameter, and every rank trains from rank 0's values (DeepSpeed's
// broadcast). What this catches: the values check missing (no warning), or
// the broadcast missing (rank 1 keeps its own values).
ZT_WORKER(ranks_differ_in_values) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  for (int stage : {0, 3}) {
    auto model = make_model(ModelKind::kMlp, /*seed=*/7 + static_cast<uint64_t>(comm->rank()));
    std::vector<std::string> warnings;
    InitOptions io;
    io.communicator = comm;
    io.warn = [&](const std::string& line) { warnings.push_back(line); };
    Engine e = initialize(model, test_config(stage, "fp32", kMicro, 1, 0.0), io);
    bool named = false;
    for (const std::string& w : warnings) named = named || contains(w, "'l1.weight' has different values on rank 1");
    c.require(named == (comm->rank() == 0), "rank 0 (only) warns, naming l1.weight");
    auto rank0 = make_model(ModelKind::kMlp, 7);
    for (const auto& [name, t] : unique_parameters(*rank0))
      c.require(e.full_fp32_param(name).equal(t), "stage " + std::to_string(stage) + ": " + name + " is rank 0's");
  }
  return c.exit_code();
}

TEST(Misuse, RanksWithDifferentConfigsOrModelsFailAtInitializeNamingTheDifference) {
  expect_worker_succeeds("ranks_disagree", 2, std::chrono::seconds(60));
}

TEST(Misuse, RanksWithDifferentInitialValuesTrainFromRankZerosAndAreWarned) {
  expect_worker_succeeds("ranks_differ_in_values", 2, std::chrono::seconds(60));
}

// ---- Parameters that get no gradient on some ranks ------------------------------

// `side` is used on rank 0 and skipped on rank 1.
struct Branchy : TestModel {
  torch::nn::Linear l1{nullptr}, side{nullptr}, out{nullptr};
  bool use_side = true;
  Branchy() {
    torch::manual_seed(5);
    l1 = register_module("l1", torch::nn::Linear(6, 16));
    side = register_module("side", torch::nn::Linear(16, 16));
    out = register_module("out", torch::nn::Linear(16, 3));
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = torch::tanh(l1->forward(x));
    if (use_side) h = h + torch::tanh(side->forward(h));
    return out->forward(h);
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 6}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 3}; }
};

// ignore_unused_parameters true (the default): a parameter unused on one rank
// counts as a zero gradient there, and the mean over ranks includes it, as
// DDP's find_unused_parameters and DeepSpeed do. Compared elementwise with
// LibTorch's AdamW on the two ranks' losses averaged, clipping active. What
// this catches: an unused parameter's slot in the reduction bucket not zeroed
// (stale bytes reduced instead of zeros: injected, every parameter of stages
// 2 and 3 failed, through the clip coefficient too).
ZT_WORKER(unused_on_one_rank_ignored) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  const int n = comm->world_size(), steps = 3;
  for (int stage : {0, 2, 3}) {
    auto model = std::make_shared<Branchy>();
    auto ref = std::make_shared<Branchy>();
    const Config config = test_config(stage, "fp32", kMicro, 1, 0.05);
    const Data data = make_data(*model, steps, kMicro * n);
    InitOptions io;
    io.communicator = comm;
    Engine e = initialize(model, config, io);
    model->use_side = comm->rank() == 0;
    std::vector<at::Tensor> params;
    for (const auto& p : ref->parameters()) params.push_back(p);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(2e-3).weight_decay(config.optimizer()->weight_decay)
                                        .eps(config.optimizer()->eps)
                                        .betas({config.optimizer()->betas[0], config.optimizer()->betas[1]}));
    for (int s = 0; s < steps; ++s) {
      e.backward(torch::mse_loss(model->forward(rows(data.x[s], e.rank(), n, kMicro, 0)),
                                 rows(data.y[s], e.rank(), n, kMicro, 0)));
      e.step();
      opt.zero_grad();
      at::Tensor loss = at::zeros({});
      for (int r = 0; r < n; ++r) {
        ref->use_side = r == 0;
        loss = loss + torch::mse_loss(ref->forward(rows(data.x[s], r, n, kMicro, 0)), rows(data.y[s], r, n, kMicro, 0));
      }
      (loss / n).backward();
      for (auto& p : params)
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      torch::nn::utils::clip_grad_norm_(params, 0.05);
      opt.step();
    }
    for (const auto& item : ref->named_parameters())
      c.elementwise(e.full_fp32_param(item.key()), item.value(), 1e-5, 1e-6,
                    "stage " + std::to_string(stage) + ": " + item.key());
  }
  return c.exit_code();
}

// ignore_unused_parameters false: the rank whose backward missed `side`
// raises naming it; the other rank's next collective raises CommError naming
// that rank once it has gone (within the communication timeout), not a hang.
ZT_WORKER(unused_on_one_rank_refused) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  auto model = std::make_shared<Branchy>();
  const Config config = test_config(2, "fp32", kMicro, 1, 0.0, [](nlohmann::json& j) {
    j["zero_optimization"]["ignore_unused_parameters"] = false;
  });
  InitOptions io;
  io.communicator = comm;
  Engine e = initialize(model, config, io);
  model->use_side = comm->rank() == 0;
  const Data data = make_data(*model, 1, kMicro * 2);
  const auto start = std::chrono::steady_clock::now();
  const std::string err = what_of([&] {
    e.backward(torch::mse_loss(model->forward(rows(data.x[0], e.rank(), 2, kMicro, 0)),
                               rows(data.y[0], e.rank(), 2, kMicro, 0)));
    e.step();
  });
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "rank " << comm->rank() << " after " << took << " s: " << err << "\n";
  if (comm->rank() == 1) {
    c.require(contains(err, "'side.weight'") && contains(err, "ignore_unused_parameters"), "rank 1 names side.weight");
  } else {
    c.require(contains(err, "Missing ranks: 1"), "rank 0 names rank 1");
    c.require(took < 3 + 5, "within the timeout + 5 s");
  }
  return c.exit_code();
}

TEST(Misuse, ParametersUnusedOnOneRankCountAsZeroGradients) {
  expect_worker_succeeds("unused_on_one_rank_ignored", 2, std::chrono::seconds(90));
}

TEST(Misuse, ParametersUnusedOnOneRankAreNamedWhenNotIgnored) {
  RankJob job;
  job.world_size = 2;
  job.worker = "unused_on_one_rank_refused";
  job.timeout = std::chrono::seconds(60);
  job.env = {{"ZEROTRAIN_COMM_TIMEOUT", "3"}};
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

// ---- One backward per step ------------------------------------------------------

// backward() twice for one micro step, and step() with no backward(), are
// refused (inside the window and at its boundary), and the refusal changes
// nothing: the run then continues bit for bit as one that never erred. What
// this catches: a second backward accumulated silently (a GAS+1-batch window
// scaled by 1/GAS: the final weights differ), or a step() counted without
// gradients.
TEST(Misuse, ASecondBackwardOrAStepWithoutOneIsRefusedAndChangesNothing) {
  auto run = [](bool misuse) {
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, 2, kMicro * 2);
    InitOptions io;
    io.communicator = one_rank_communicator();
    Engine e = initialize(model, test_config(2, "fp32", kMicro, 2, 0.05), io);
    for (int s = 0; s < 2; ++s)
      for (int k = 0; k < 2; ++k) {
        auto loss = [&] {
          return torch::mse_loss(model->forward(rows(data.x[s], 0, 1, kMicro, k)), rows(data.y[s], 0, 1, kMicro, k));
        };
        if (misuse) {
          const std::string no_backward = what_of([&] { e.step(); });
          EXPECT_TRUE(contains(no_backward, "without backward()")) << no_backward;
        }
        e.backward(loss());
        if (misuse) {
          const std::string twice = what_of([&] { e.backward(loss()); });
          EXPECT_TRUE(contains(twice, "backward() called twice for micro step " + std::to_string(2 * s + k)))
              << twice;
        }
        e.step();
      }
    return snapshot(e, *model);
  };
  const auto clean = run(false), misused = run(true);
  for (const auto& [name, t] : clean) EXPECT_TRUE(same_bits(t, misused.at(name))) << name;
}

// ---- Another accumulation setting on load ---------------------------------------

// Note [A load with another accumulation setting]: saved after 3 steps of GAS
// 2 and loaded under GAS 4, the next step takes 4 micro-batches, and saving
// after it works. Under the same GAS the counters come back verbatim. What
// this catches: micro_steps restored verbatim under the new GAS (6 % 4 = 2:
// the first window closes after 2 micro-batches and the next save is refused).
TEST(Misuse, ACheckpointLoadedUnderAnotherAccumulationSettingStartsAFullWindow) {
  TempDir dir;
  const Data data = make_data(*make_model(ModelKind::kMlp), 4, kMicro * 4);
  {
    auto model = make_model(ModelKind::kMlp);
    InitOptions io;
    io.communicator = one_rank_communicator();
    Engine e = initialize(model, test_config(1, "fp32", kMicro, 2, 0.0), io);
    for (int s = 0; s < 3; ++s) engine_step(e, *model, data, s, kMicro);
    e.save_checkpoint(dir.path(), "gas2");
  }
  for (int64_t gas : {2, 4}) {
    SCOPED_TRACE("loaded under gradient_accumulation_steps " + std::to_string(gas));
    auto model = make_model(ModelKind::kMlp);
    InitOptions io;
    io.communicator = one_rank_communicator();
    Engine e = initialize(model, test_config(1, "fp32", kMicro, gas, 0.0), io);
    ASSERT_TRUE(e.load_checkpoint(dir.path(), "gas2").has_value());
    EXPECT_EQ(e.global_steps(), 3);
    EXPECT_EQ(e.micro_steps(), 3 * gas);
    for (int64_t k = 0; k < gas; ++k) {
      EXPECT_EQ(e.is_gradient_accumulation_boundary(), k == gas - 1) << "micro-batch " << k;
      e.backward(torch::mse_loss(model->forward(rows(data.x[3], 0, 1, kMicro, static_cast<int>(k))),
                                 rows(data.y[3], 0, 1, kMicro, static_cast<int>(k))));
      e.step();
    }
    EXPECT_EQ(e.global_steps(), 4);
    EXPECT_NO_THROW(e.save_checkpoint(dir.path(), "after" + std::to_string(gas)));
  }
}

}  // namespace
}  // namespace zerotrain::testing
