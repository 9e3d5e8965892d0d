// Engine behaviour beyond plain parity: gradient accumulation, clipping,
// overflow and loss scaling, LAMB on shards, overlap of reduction with
// backward, and the memory and communication reports.

#include "engine/training.h"
#include "comm/worker_util.h"
#include "support/multiprocess.h"

#include <chrono>
#include <thread>

namespace zerotrain::testing {
namespace {

constexpr int64_t kMicro = 2;

Engine make_engine(const std::shared_ptr<TestModel>& model, const Config& config,
                   std::shared_ptr<Communicator> comm,
                   std::function<void(const EngineEvent&)> observer = nullptr,
                   WrapPolicy policy = WrapPolicy()) {
  InitOptions o;
  o.communicator = std::move(comm);
  o.observer = std::move(observer);
  o.wrap_policy = std::move(policy);
  return initialize(model, config, o);
}

void compare_params(RankChecks& checks, TestModel& got, TestModel& want, double rtol, double atol,
                    const std::string& what) {
  const auto g = got.named_parameters();
  for (const auto& item : want.named_parameters())
    checks.elementwise(g[item.key()], item.value(), rtol, atol, what + ": " + item.key());
}

// ---- Accumulation and clipping ------------------------------------------------

ZT_WORKER(engine_accumulation) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size(), steps = 5;
  for (int stage : {0, 1, 2}) {
    const Config config = test_config(stage, "fp32", kMicro, 4, 0.0);
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, steps, kMicro * 4 * n);
    Engine e = make_engine(model, config, comm);
    for (int s = 0; s < steps; ++s) {
      for (int k = 0; k < 4; ++k) {
        checks.require(e.is_gradient_accumulation_boundary() == (k == 3),
                       "boundary only before the 4th micro-batch's step");
        at::Tensor x = rows(data.x[s], e.rank(), n, kMicro, k);
        e.backward(torch::mse_loss(model->forward(x), rows(data.y[s], e.rank(), n, kMicro, k)));
        e.step();
        checks.require(e.was_step_applied() == (k == 3), "applied only at the boundary");
      }
    }
    checks.require(e.micro_steps() == 4 * steps && e.global_steps() == steps,
                   "stage " + std::to_string(stage) + ": micro/global steps");
    auto ref = make_model(ModelKind::kMlp);
    reference_train(*ref, config, data, steps);  // one 4x batch per step
    compare_params(checks, *model, *ref, 1e-5, 1e-6,
                   "stage " + std::to_string(stage) + " GAS 4 vs one 4x batch");
  }
  return checks.exit_code();
}

ZT_WORKER(engine_clipping) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size(), steps = 8;
  for (int stage : {0, 1, 2}) {
    const double clip = 0.05;
    const Config config = test_config(stage, "fp32", kMicro, 2, clip);
    auto model = make_model(ModelKind::kTransformer);
    const Data data = make_data(*model, steps, kMicro * 2 * n);
    Engine e = make_engine(model, config, comm);
    auto ref = make_model(ModelKind::kTransformer);
    const std::vector<double> ref_norms = reference_train(*ref, config, data, steps);
    for (int s = 0; s < steps; ++s) {
      engine_step(e, *model, data, s, kMicro);
      const std::string at = "stage " + std::to_string(stage) + " step " + std::to_string(s);
      checks.require(ref_norms[static_cast<size_t>(s)] > 2 * clip, at + ": clipping must be active");
      const double norm = e.global_grad_norm().value_or(-2);
      checks.require(std::abs(norm - ref_norms[static_cast<size_t>(s)]) <=
                         1e-5 * ref_norms[static_cast<size_t>(s)],
                     at + ": global norm " + std::to_string(norm) + ", reference " +
                         std::to_string(ref_norms[static_cast<size_t>(s)]));
    }
    compare_params(checks, *model, *ref, 1e-5, 1e-6, "stage " + std::to_string(stage) + " clipped");
  }
  return checks.exit_code();
}

// ---- Overflow and loss scaling ------------------------------------------------

/// DeepSpeed's DynamicLossScaler.update_scale, written out again for the test.
struct ReferenceScaler {
  double scale, min_scale;
  int64_t window, hysteresis, hyst, it = 0, last_overflow = -1;
  void update(bool overflow) {
    if (overflow) {
      if (hysteresis == 1 || hyst == 1) {
        scale = std::max(scale / 2, min_scale);
      } else {
        hyst -= 1;
      }
      last_overflow = it;
    } else if ((it - last_overflow - 1) > 0 && (it - last_overflow - 1) % window == 0) {
      scale *= 2;
      hyst = hysteresis;
    }
    it += 1;
  }
};

ZT_WORKER(engine_overflow) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size(), steps = 16;
  const std::vector<int> overflow_steps{1, 2, 4, 8, 9, 10, 11};
  const Config config = test_config(2, "fp16", kMicro, 1, 1.0, [](nlohmann::json& j) {
    j["fp16"]["initial_scale_power"] = 10;
    j["fp16"]["loss_scale_window"] = 3;
    j["fp16"]["hysteresis"] = 2;
    j["scheduler"] = {{"type", "WarmupLR"},
                      {"params", {{"warmup_num_steps", 100}, {"warmup_type", "linear"}}}};
  });
  auto model = make_model(ModelKind::kMlp);
  const Data data = make_data(*model, steps, kMicro * n);
  Engine e = make_engine(model, config, comm);
  ReferenceScaler ref{1024, 1, 3, 2, 2};
  int64_t applied = 0;
  for (int s = 0; s < steps; ++s) {
    const bool overflow =
        std::find(overflow_steps.begin(), overflow_steps.end(), s) != overflow_steps.end();
    const double lr_before = e.lr()[0];
    // Only one rank sees the inf; every rank must skip.
    const bool inject = overflow && comm->rank() == s % n;
    engine_step(e, *model, data, s, kMicro, inject ? std::numeric_limits<double>::infinity() : 1.0);
    ref.update(overflow);
    const std::string at = "step " + std::to_string(s);
    checks.require(e.was_step_applied() == !overflow, at + ": applied must be " +
                                                          std::to_string(!overflow));
    checks.require(e.loss_scale() == ref.scale, at + ": loss scale " + std::to_string(e.loss_scale()) +
                                                    ", DeepSpeed's rule gives " + std::to_string(ref.scale));
    // WarmupLR, linear over 100 steps from 0 to lr: after a applied updates
    // the schedule is at t = a - 1 (Note [Schedules follow DeepSpeed's step convention]).
    applied += overflow ? 0 : 1;
    const double expected_lr = config.optimizer()->lr * std::max<int64_t>(0, applied - 1) / 100.0;
    checks.require(std::abs(e.lr()[0] - expected_lr) <= 1e-12,
                   at + ": lr " + std::to_string(e.lr()[0]) + ", expected " + std::to_string(expected_lr) +
                       " (lr before " + std::to_string(lr_before) + "); the schedule advances on applied steps only");
    if (overflow) checks.require(e.global_grad_norm() == -1.0, at + ": norm of an overflow is -1");
  }
  checks.require(e.skipped_steps() == static_cast<int64_t>(overflow_steps.size()), "skipped steps");
  checks.require(e.global_steps() == steps, "global steps count skipped steps too");
  for (const auto& p : model->parameters())
    checks.require(p.isfinite().all().item<bool>(), "parameters stay finite");
  return checks.exit_code();
}

ZT_WORKER(engine_overflow_bf16_parity) {
  // bf16 with check_grad_overflow: the skipped steps leave no trace.
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size(), steps = 8;
  const std::vector<int> skip{3, 6};
  const Config config = test_config(1, "bf16", kMicro, 1, 0.0);
  auto model = make_model(ModelKind::kMlp);
  const Data data = make_data(*model, steps, kMicro * n);
  Engine e = make_engine(model, config, comm);
  for (int s = 0; s < steps; ++s) {
    const bool overflow = std::find(skip.begin(), skip.end(), s) != skip.end();
    engine_step(e, *model, data, s, kMicro,
                overflow && comm->rank() == n - 1 ? std::numeric_limits<double>::infinity() : 1.0);
  }
  auto ref = make_model(ModelKind::kMlp);
  reference_train(*ref, config, data, steps, skip);
  compare_params(checks, *model, *ref, 1.0 / 128, 0.25 * steps * config.optimizer()->lr,
                 "bf16 with skipped steps");
  checks.require(e.skipped_steps() == 2, "two skipped steps");
  return checks.exit_code();
}

// Note [The overflow decision is read a step late]: bf16 with
// check_grad_overflow (the default) leaves each step's decision pending until
// the next step or a query. Steps 2 and 5 overflow (inf in the loss) under a
// WarmupLR schedule and Adam's bias correction. The run that queries nothing
// between steps must end with bitwise the weights, moments-driven updates, lr
// and counts of the run that asks was_step_applied() after every step (which
// reads each decision at once), and with DeepSpeed's counts: 2 skipped, the
// schedule advanced by the 6 applied steps only. Catches a pending decision
// dropped or applied twice (Adam's step count and the lr run ahead or behind),
// and was_step_applied() answering for an older step.
TEST(EngineOverflow, Bf16DecisionReadAStepLateCountsAsIfReadAtOnce) {
  const int steps = 8;
  const std::vector<int> skip{2, 5};
  const Config config = test_config(1, "bf16", kMicro, 2, 0.5, [](nlohmann::json& j) {
    j["scheduler"] = {{"type", "WarmupLR"}, {"params", {{"warmup_num_steps", 100}, {"warmup_type", "linear"}}}};
  });
  ASSERT_TRUE(config.bf16().check_grad_overflow);
  auto train = [&](bool query_each_step) {
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, steps, kMicro * 2);
    Engine e = make_engine(model, config, one_rank_communicator());
    for (int s = 0; s < steps; ++s) {
      const bool overflow = std::find(skip.begin(), skip.end(), s) != skip.end();
      engine_step(e, *model, data, s, kMicro, overflow ? std::numeric_limits<double>::infinity() : 1.0);
      if (query_each_step) {
        EXPECT_EQ(e.was_step_applied(), !overflow) << "step " << s;
      }
    }
    EXPECT_EQ(e.skipped_steps(), 2);
    EXPECT_EQ(e.global_steps(), steps);
    EXPECT_TRUE(e.was_step_applied()) << "the last step applied";
    // WarmupLR after 6 applied steps sits at t = 5 (Note [Schedules follow DeepSpeed's step convention]).
    EXPECT_DOUBLE_EQ(e.lr()[0], config.optimizer()->lr * 5 / 100.0);
    std::vector<at::Tensor> weights;
    for (const auto& p : model->parameters()) weights.push_back(p.detach().clone());
    return weights;
  };
  const std::vector<at::Tensor> lazy = train(false), eager = train(true);
  ASSERT_EQ(lazy.size(), eager.size());
  for (size_t i = 0; i < lazy.size(); ++i) EXPECT_TRUE(at::equal(lazy[i], eager[i])) << "parameter " << i;
}

// ---- prescale_gradients ----------------------------------------------------------

struct Weights : torch::nn::Module {
  at::Tensor w;
  Weights() { w = register_parameter("w", torch::ones({4})); }
};

// prescale_gradients at stage 0 (DeepSpeed's rule): true divides each rank's
// fp16 gradient by N before the sum, false sums first and divides after. Each
// rank's scaled gradient here is 1.2 * 2^15 = 39328 in fp16, so the sum of
// two overflows fp16 (65504) unless it was halved first. What this catches:
// the key parsed and ignored (both runs then behave alike).
ZT_WORKER(engine_prescale) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  for (bool prescale : {true, false}) {
    const Config config = test_config(0, "fp16", 1, 1, 0.0, [&](nlohmann::json& j) {
      j["prescale_gradients"] = prescale;
      j["fp16"]["initial_scale_power"] = 15;
    });
    auto model = std::make_shared<Weights>();
    InitOptions o;
    o.communicator = comm;
    Engine e = initialize(model, config, o);
    const at::Tensor x = torch::full({4}, 1.2);
    e.backward((model->w.to(at::kFloat) * x).sum());
    e.step();
    const std::string what = prescale ? "prescale_gradients true" : "prescale_gradients false";
    checks.require(e.was_step_applied() == prescale,
                   what + ": the step must be " + (prescale ? "applied" : "skipped (fp16 sum overflowed)"));
  }
  return checks.exit_code();
}

// ---- LAMB on shards -----------------------------------------------------------

ZT_WORKER(engine_lamb) {
  // Stages 1/2 split parameters across ranks; LAMB's trust ratio needs whole-
  // parameter norms. The reference is the same engine on one rank (stage 0).
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size(), steps = 6;
  const auto lamb = [](nlohmann::json& j) {
    j["optimizer"] = {{"type", "Lamb"},
                      {"params", {{"lr", 5e-3}, {"weight_decay", 0.01}, {"max_coeff", 10.0},
                                  {"min_coeff", 0.01}}}};
  };
  auto ref_model = make_model(ModelKind::kTransformer);
  const Data data = make_data(*ref_model, steps, kMicro * n);
  Engine ref = make_engine(ref_model, test_config(0, "fp32", kMicro * n, 1, 0.0, lamb), one_rank_communicator());
  for (int s = 0; s < steps; ++s) engine_step(ref, *ref_model, data, s, kMicro * n);
  for (int stage : {1, 2}) {
    auto model = make_model(ModelKind::kTransformer);
    Engine e = make_engine(model, test_config(stage, "fp32", kMicro, 1, 0.0, lamb), comm);
    for (int s = 0; s < steps; ++s) engine_step(e, *model, data, s, kMicro);
    compare_params(checks, *model, *ref_model, 1e-5, 1e-6,
                   "LAMB stage " + std::to_string(stage) + " vs one rank");
  }
  return checks.exit_code();
}

// ---- Overlap ------------------------------------------------------------------

ZT_WORKER(engine_overlap) {
  // Rank 1's backward is slowed (a sleep on each gradient), so rank 0's
  // reduce-scatters cannot complete until rank 1 catches up: seen from rank 0
  // the backend is slow. With overlap_comm, rank 0 must keep computing
  // gradients while its reductions are in flight; without it, never.
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size();
  for (bool overlap : {true, false}) {
    std::vector<EngineEvent> events;
    auto observer = [&](const EngineEvent& ev) {
      if (comm->rank() == 1 && ev.kind == EngineEvent::Kind::kGradReady)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      events.push_back(ev);
    };
    const Config config = test_config(2, "fp32", kMicro, 1, 0.0, [&](nlohmann::json& j) {
      j["zero_optimization"]["overlap_comm"] = overlap;
      j["zero_optimization"]["reduce_bucket_size"] = 100;
    });
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, 1, kMicro * n);
    Engine e = make_engine(model, config, comm, observer);
    engine_step(e, *model, data, 0, kMicro);
    if (comm->rank() != 0) continue;
    int first_launch = -1, last_grad = -1, grads_behind_comm = 0, launches = 0;
    for (int i = 0; i < static_cast<int>(events.size()); ++i) {
      const EngineEvent& ev = events[static_cast<size_t>(i)];
      if (ev.kind == EngineEvent::Kind::kGradReady) {
        last_grad = i;
        if (ev.in_flight > 0) ++grads_behind_comm;
      }
      if (ev.kind == EngineEvent::Kind::kReduceLaunched) {
        ++launches;
        if (first_launch < 0) first_launch = i;
        if (!overlap)
          checks.require(i + 1 < static_cast<int>(events.size()) &&
                             events[static_cast<size_t>(i) + 1].kind == EngineEvent::Kind::kReduceRetired,
                         "without overlap each reduction is waited for at once");
      }
    }
    const std::string what = overlap ? "overlap on" : "overlap off";
    checks.require(launches >= 3, what + ": the model must span several units");
    checks.require(first_launch >= 0 && first_launch < last_grad,
                   what + ": the first reduce-scatter is issued before backward produces its last gradient");
    if (overlap) {
      checks.require(grads_behind_comm > 0,
                     what + ": backward produced gradients while a reduction was in flight");
    } else {
      checks.require(grads_behind_comm == 0, what + ": no reduction may be in flight during backward");
    }
  }
  return checks.exit_code();
}

// ---- Reports ------------------------------------------------------------------

/// Ψ' of the MLP in one unit: parameters at multiples of `align`, the end
/// padded to N * align. The MLP's parameter sizes in registration order.
int64_t padded_mlp_numel(int n, int64_t align) {
  int64_t end = 0;
  for (int64_t numel : {96, 16, 256, 16, 48, 3}) end = (end + align - 1) / align * align + numel;
  return (end + n * align - 1) / (n * align) * (n * align);
}

ZT_WORKER(engine_reports) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const int n = comm->world_size();
  const int64_t psi = padded_mlp_numel(n, 8);  // bf16: 16-byte alignment = 8 elements
  checks.require(psi - 435 < n * 8 + 4 * 8, "padding stays below one aligned chunk per rank and parameter");
  for (int stage : {0, 1, 2}) {
    const int gas = 2;
    const Config config = test_config(stage, "bf16", kMicro, gas, 1.0, [](nlohmann::json& j) {
      j["zero_optimization"]["allgather_bucket_size"] = 1000000;
    });
    auto model = make_model(ModelKind::kMlp);
    const Data data = make_data(*model, 2, kMicro * gas * n);
    // No marks: the whole model is the root unit, so the formulas see one Ψ'.
    Engine e = make_engine(model, config, comm, nullptr, WrapPolicy::marked_only());
    checks.require(e.units().size() == 1, "one unit");
    const std::string at = "stage " + std::to_string(stage) + " N=" + std::to_string(n) + ": ";
    const MemoryReport m = e.memory_report();
    const int64_t shard = stage >= 1 ? psi / n : psi;
    // bf16 with Adam: 2Ψ parameters, 2Ψ (or 2Ψ/N) gradients, 4Ψ/N master, 8Ψ/N moments.
    checks.require(m.parameters == 2 * psi, at + "parameters " + std::to_string(m.parameters));
    checks.require(m.gradients == 2 * (stage == 2 ? psi / n : psi), at + "gradients " + std::to_string(m.gradients));
    checks.require(m.master_weights == 4 * shard, at + "master " + std::to_string(m.master_weights));
    checks.require(m.optimizer_states == 8 * shard, at + "moments " + std::to_string(m.optimizer_states));
    // Stage 2 packs each unit into one of two buckets (overlap_comm); 0 and 1 reduce in place.
    checks.require(m.communication_buffers == (stage == 2 ? 2 * 2 * psi : 0),
                   at + "buffers " + std::to_string(m.communication_buffers));

    for (int s = 0; s < 2; ++s) engine_step(e, *model, data, s, kMicro);
    const CommStats c = e.comm_report();
    const auto& ar = c[Collective::kAllReduce];
    const auto& rs = c[Collective::kReduceScatter];
    const auto& ag = c[Collective::kAllGather];
    const int64_t grad_bytes = 2 * psi;
    if (stage == 0) {
      checks.require(ar.calls == 1 && ar.payload_bytes == grad_bytes, at + "one gradient all-reduce of Ψ");
      checks.require(rs.calls == 0 && ag.calls == 0, at + "no reduce-scatter or all-gather");
    } else {
      // Stage 1 reduces at the boundary only; stage 2 every micro-batch.
      const int64_t reductions = stage == 2 ? gas : 1;
      checks.require(rs.calls == reductions && rs.payload_bytes == reductions * grad_bytes,
                     at + "reduce-scatter payload " + std::to_string(rs.payload_bytes));
      checks.require(ag.calls == 1 && ag.payload_bytes == grad_bytes,
                     at + "all-gather payload " + std::to_string(ag.payload_bytes));
      // The fp64 norm, one scalar.
      checks.require(ar.calls == 1 && ar.payload_bytes == 8, at + "one 8-byte norm all-reduce");
      // Gloo has no reduce-scatter: it sends an all-reduce's bytes. A ring
      // all-gather sends (N-1)/N of the buffer.
      checks.require(rs.wire_bytes == reductions * 2 * grad_bytes * (n - 1) / n,
                     at + "reduce-scatter wire bytes " + std::to_string(rs.wire_bytes));
      checks.require(ag.wire_bytes == grad_bytes * (n - 1) / n,
                     at + "all-gather wire bytes " + std::to_string(ag.wire_bytes));
    }
  }
  return checks.exit_code();
}

void run(const std::string& worker, int world_size, int timeout_s = 110) {
  expect_worker_succeeds(worker, world_size, std::chrono::seconds(timeout_s));
}

TEST(EngineAccumulation, FourMicroBatchesEqualOneFourTimesBatch) { run("engine_accumulation", 2); }
TEST(EngineClipping, NormMatchesReferenceAndClipsLikeLibTorch) { run("engine_clipping", 2); }
TEST(EngineOverflow, InfOnOneRankSkipsEverywhereAndScaleFollowsDeepSpeed) { run("engine_overflow", 2); }
TEST(EngineOverflow, Bf16SkippedStepsLeaveNoTrace) { run("engine_overflow_bf16_parity", 2); }
TEST(EngineLamb, ShardedLambMatchesOneRank) { run("engine_lamb", 2); }
TEST(EnginePrescale, PrescaleGradientsDividesBeforeTheSum) { run("engine_prescale", 2); }
TEST(EngineOverlap, ReduceScattersStartBeforeBackwardEnds) { run("engine_overlap", 2); }
TEST(EngineReports, MemoryAndCommunicationMatchZeroFormulasN2) { run("engine_reports", 2); }
TEST(EngineReports, MemoryAndCommunicationMatchZeroFormulasN4) { run("engine_reports", 4); }

}  // namespace
}  // namespace zerotrain::testing
