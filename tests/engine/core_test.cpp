// The ZeRO core without a torch::nn::Module: plain tensors as parameters, units
// and triggers driven by hand, as the Python package will drive them from
// nn.Module hooks; and a parameter gather issued while gradient reductions
// are in flight, which completes without waiting for them.

#include "zero/sharded_model.h"

#include "comm/worker_util.h"
#include "engine/training.h"
#include "support/multiprocess.h"

#include <zerotrain/distributed.h>

#include <chrono>
#include <mutex>
#include <thread>

namespace zerotrain::testing {
namespace {

using Clock = std::chrono::steady_clock;

/// Three 16x16 "layers" as leaf tensors, one unit each.
zero::ModelSpec three_layers() {
  torch::manual_seed(5);
  zero::ModelSpec spec;
  for (int i = 0; i < 3; ++i) {
    spec.params.push_back({"w" + std::to_string(i), (torch::randn({16, 16}) * 0.2).requires_grad_(), at::Tensor()});
    spec.units.push_back({"layer" + std::to_string(i), {i}, /*has_triggers=*/true});
  }
  spec.groups.push_back({1e-3, 0.0, {0, 1, 2}});
  return spec;
}

zero::CorePlan stage2_plan() {
  zero::CorePlan plan;
  plan.policy = ShardingPolicy::for_stage(2);
  plan.reduce.overlap = true;
  plan.reduce.comm_dtype = at::kFloat;
  return plan;
}

/// The front end's job: the triggers around each layer, the loss, backward.
void forward_backward(zero::ShardedModel& core, const std::shared_ptr<zero::ShardedModel>& shared,
                      const at::Tensor& x) {
  at::Tensor h = x;
  for (int u = 0; u < 3; ++u) {
    core.before_forward(u);
    h = torch::tanh(h.mm(core.param(u)));
    core.after_forward(u);
    attach_before_backward(shared, u, {h});
  }
  core.begin_backward(/*reduce=*/true, /*boundary=*/true);
  h.pow(2).mean().backward();
  core.end_backward();
}

struct Event {
  EngineEvent::Kind kind;
  int unit;
  Clock::time_point at;
};

// Rank 1 gathers unit 2 as soon as its backward is done, then waits 1.5 s
// before its reduce-scatter can be issued; rank 0 issues unit 2's
// reduce-scatter first and then the same gather. On the gather channel the
// gather completes at once, while the reduction waits for rank 1. What this
// catches: gathers and reductions on one communicator (a FIFO: rank 0's
// gather would wait for the reduction, and the two ranks' different issue
// orders would not even match).
ZT_WORKER(core_gather_during_reduction) {
  auto comm = init_distributed();
  auto gather = comm->open_channel("gather");
  RankChecks checks(comm->rank());
  std::vector<Event> events;
  std::mutex mutex;
  std::shared_ptr<zero::ShardedModel> core;
  bool gathered = false;
  auto observer = [&](const EngineEvent& ev) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      events.push_back({ev.kind, ev.unit, Clock::now()});
    }
    if (gathered || ev.unit != 2) return;
    const bool rank0_turn = comm->rank() == 0 && ev.kind == EngineEvent::Kind::kReduceLaunched;
    const bool rank1_turn = comm->rank() == 1 && ev.kind == EngineEvent::Kind::kAfterBackward;
    if (!rank0_turn && !rank1_turn) return;
    gathered = true;
    if (rank0_turn) checks.require(ev.in_flight == 1, "rank 0 gathers while unit 2's reduction is in flight");
    core->gather({2});
    if (rank1_turn) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  };
  core = std::make_shared<zero::ShardedModel>(three_layers(), stage2_plan(), *comm, *gather, observer);
  torch::manual_seed(9);
  forward_backward(*core, core, torch::randn({4, 16}));
  checks.require(gathered, "the gather ran");

  const ExecutionTrace trace = core->trace();
  checks.require(trace.forward == std::vector<int>{0, 1, 2}, "forward order 0, 1, 2");
  checks.require(trace.backward == std::vector<int>{2, 1, 0}, "backward order 2, 1, 0");
  if (comm->rank() != 0) return checks.exit_code();
  const auto when = [&](EngineEvent::Kind kind, int unit) {
    for (const Event& e : events)
      if (e.kind == kind && e.unit == unit) return e.at;
    checks.require(false, std::string("no ") + to_string(kind) + " event for unit " + std::to_string(unit));
    return Clock::time_point{};
  };
  const auto launched = when(EngineEvent::Kind::kReduceLaunched, 2);
  const auto gathered_at = when(EngineEvent::Kind::kGatherDone, 2);
  const auto retired = when(EngineEvent::Kind::kReduceRetired, 2);
  const double gather_s = std::chrono::duration<double>(gathered_at - launched).count();
  const double reduce_s = std::chrono::duration<double>(retired - launched).count();
  std::printf("rank 0: unit 2's gather done %.3f s after its reduce-scatter was issued; the reduce-scatter "
              "retired after %.3f s\n", gather_s, reduce_s);
  checks.require(gathered_at < retired, "the gather completed before the reduction it was issued behind");
  checks.require(gather_s < 0.75, "the gather did not wait for the reduction");
  checks.require(reduce_s > 1.0, "the reduction waited for rank 1");
  return checks.exit_code();
}

TEST(Core, AGatherIssuedWhileReductionsAreInFlightDoesNotWaitForThem) {
  expect_worker_succeeds("core_gather_during_reduction", 2, std::chrono::seconds(60), /*print_rank0=*/true);
}

// The core trains plain tensors like LibTorch's AdamW on the full batch: no
// module, no engine.
TEST(Core, TrainsPlainTensorsWithoutAModule) {
  auto comm = one_rank_communicator();
  zero::ModelSpec spec = three_layers();
  std::vector<at::Tensor> ref;
  for (const auto& p : spec.params) ref.push_back(p.tensor.detach().clone().requires_grad_());
  auto core = std::make_shared<zero::ShardedModel>(spec, stage2_plan(), *comm, *comm, nullptr);
  torch::optim::AdamW opt(ref, torch::optim::AdamWOptions(1e-3).weight_decay(0.0));
  torch::manual_seed(9);
  for (int s = 0; s < 3; ++s) {
    const at::Tensor x = torch::randn({4, 16});
    forward_backward(*core, core, x);
    const double norm = std::sqrt(core->grad_norm_sq().item<double>());
    core->update(OptimizerKind::kAdamW,
                 [](int) {
                   optim::StepHyperParams h;
                   h.lr = 1e-3;
                   return h;
                 },
                 s + 1, optim::StepControl::make(core->device(), 1.0));
    core->gather_params();
    core->zero_grads();
    opt.zero_grad();
    at::Tensor h = x;
    for (const auto& w : ref) h = torch::tanh(h.mm(w));
    h.pow(2).mean().backward();
    double ref_norm = 0;
    for (const auto& w : ref) ref_norm += w.grad().pow(2).sum().item<double>();
    EXPECT_NEAR(norm, std::sqrt(ref_norm), 1e-6 * std::sqrt(ref_norm));
    opt.step();
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at::allclose(core->param(i), ref[static_cast<size_t>(i)], 1e-5, 1e-7)) << i;
}

}  // namespace
}  // namespace zerotrain::testing
