// ZeRO stages 0-3 on N = 1, 2 and 4 ranks end where a single process running
// LibTorch's own AdamW on the full batch ends. Stage 3 runs marked models
// (each layer gathered and released around its forward and backward), with
// prefetch and without, with a weight tied across two units, and with a unit
// that every rank skips on some steps (so later steps leave the recorded order).

#include "engine/training.h"
#include "comm/worker_util.h"
#include "support/multiprocess.h"

#include <cstdio>

namespace zerotrain::testing {
namespace {

constexpr int kSteps = 10;
constexpr int64_t kMicro = 2;

/// |engine - reference| <= rtol |reference| + atol, element by element.
struct Tolerance {
  double rtol;
  double atol;
};

// fp32: 1e-5 relative (plus 1e-6 absolute for parameters near 0).
// bf16/fp16: the parameters are stored in the dtype (relative error up to one
// eps), and forward and backward run in it, so each gradient carries relative
// errors of a few eps. Adam divides by the gradient's own magnitude, so where
// a gradient is small its update can move by a good part of lr; the bound
// allows a quarter of a full step (lr) per update on top of the rounding. A
// wrong or missing update (a dropped unit, a wrong lr) moves parameters by
// about kSteps * lr and fails it.
Tolerance tolerance(const std::string& dtype, double lr) {
  if (dtype == "fp32") return {1e-5, 1e-6};
  const double eps = dtype == "bf16" ? 1.0 / 128 : 1.0 / 1024;
  return {eps, 0.25 * kSteps * lr};
}

enum class Prefetch { kOn, kOff };

int run_case(RankChecks& checks, const std::shared_ptr<Communicator>& comm, ModelKind kind,
             int stage, const std::string& dtype, bool overlap, Prefetch prefetch = Prefetch::kOn) {
  const int n = comm->world_size();
  const Config config = test_config(stage, dtype, kMicro, 1, 0.0, [&](nlohmann::json& j) {
    j["zero_optimization"]["overlap_comm"] = overlap;
    if (prefetch == Prefetch::kOff) j["zero_optimization"]["stage3_prefetch_bucket_size"] = 0;
  });
  auto model = make_model(kind);
  Data data = make_data(*model, kSteps, kMicro * n);
  if (kind == ModelKind::kSkippingMarkedMlp) {
    // Every micro-batch of a step agrees on skipping the middle layer (the
    // full-batch reference takes the same branch): skipped on steps 1, 4, 7.
    for (int s = 0; s < kSteps; ++s) {
      at::Tensor first = data.x[static_cast<size_t>(s)].select(1, 0);
      first.copy_(first.abs().add(0.01).mul(s % 3 == 1 ? -1.0 : 1.0));
    }
  }
  InitOptions options;
  options.communicator = comm;
  Engine engine = initialize(model, config, options);
  for (int s = 0; s < kSteps; ++s) engine_step(engine, *model, data, s, kMicro);

  auto reference = make_model(kind);
  reference_train(*reference, config, data, kSteps);
  const Tolerance tol = tolerance(dtype, config.optimizer()->lr);
  const std::string what = std::string(to_string(kind)) + " stage " + std::to_string(stage) + " " + dtype +
                           (overlap ? " overlap" : "") + (prefetch == Prefetch::kOff ? " no-prefetch" : "") +
                           " N=" + std::to_string(n);
  GatheredParameters full = engine.gathered_parameters();  // stage 3 released them
  const auto got = model->named_parameters();
  const auto want = reference->named_parameters();
  double worst = 0;
  for (const auto& item : want) {
    const at::Tensor a = got[item.key()].to(at::kDouble);
    const at::Tensor e = item.value().to(at::kDouble);
    worst = std::max(worst, ((a - e).abs() / (tol.atol + tol.rtol * e.abs())).max().item<double>());
    checks.elementwise(a, e, tol.rtol, tol.atol, what + ": " + item.key());
  }
  if (comm->rank() == 0)
    std::printf("%-36s worst error / tolerance = %.3f, steps applied %lld\n", what.c_str(), worst,
                static_cast<long long>(engine.global_steps() - engine.skipped_steps()));
  checks.require(engine.skipped_steps() == 0, what + ": no step may overflow");
  return 0;
}

int parity_worker() {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  for (ModelKind kind : {ModelKind::kMlp, ModelKind::kTransformer})
    for (int stage : {0, 1, 2})
      for (const char* dtype : {"fp32", "bf16", "fp16"})
        run_case(checks, comm, kind, stage, dtype, /*overlap=*/stage == 2);
  // The other overlap setting of each stage, once.
  for (int stage : {0, 1, 2}) run_case(checks, comm, ModelKind::kMlp, stage, "fp32", stage != 2);
  for (const char* dtype : {"fp32", "bf16", "fp16"}) run_case(checks, comm, ModelKind::kMarkedOddMlp, 3, dtype, true);
  run_case(checks, comm, ModelKind::kMarkedOddMlp, 3, "fp32", false, Prefetch::kOff);
  run_case(checks, comm, ModelKind::kTiedMarkedMlp, 3, "fp32", true);
  run_case(checks, comm, ModelKind::kSkippingMarkedMlp, 3, "fp32", true);
  run_case(checks, comm, ModelKind::kSkippingMarkedMlp, 3, "fp32", true, Prefetch::kOff);
  return checks.exit_code();
}

ZT_WORKER(engine_parity) { return parity_worker(); }

void run_parity(int world_size) {
  expect_worker_succeeds("engine_parity", world_size, std::chrono::seconds(240), /*print_rank0=*/true);
}

TEST(EngineParity, OneRankMatchesLibTorchAdamW) { run_parity(1); }
TEST(EngineParity, TwoRanksMatchLibTorchAdamW) { run_parity(2); }
TEST(EngineParity, FourRanksMatchLibTorchAdamW) { run_parity(4); }

}  // namespace
}  // namespace zerotrain::testing
