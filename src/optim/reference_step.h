#pragma once
// Reference optimizer steps (Adam/AdamW, LAMB) with DeepSpeed's semantics, on
// fp32 tensors through ATen, and the hyper-parameters every optimizer path
// shares. The engine runs the fused kernels (optim/fused_optimizer.h); the
// kernels' tests compare against these references as well as against fp64.
//
// Note [LAMB on shards needs whole-parameter norms]
// LAMB's trust ratio is ||p|| / ||u|| per parameter tensor, but under ZeRO a
// parameter can straddle two ranks' shards. The step is therefore split in
// two, like DeepSpeed's FusedLamb kernels: lamb_prepare() updates m and v,
// writes the update u for one segment and returns that segment's partial
// squared norms; the engine sums the partial norms of each parameter across
// segments and ranks (one small all-reduce), and lamb_apply() scales u by the
// clamped trust ratio. Without ZeRO, a parameter is one segment.

#include <zerotrain/config.h>

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace zerotrain::optim {

/// The hyper-parameters of one step: the config's, with lr (and beta1 for
/// OneCycle) from the schedule.
struct StepHyperParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool bias_correction = true;
  WeightDecayMode weight_decay_mode = WeightDecayMode::kDecoupled;
  LambOptions lamb;

  static StepHyperParams from_config(const OptimizerConfig& c);
};

/// Adam's moments for one parameter segment (fp32, same shape).
struct Moments {
  at::Tensor exp_avg;
  at::Tensor exp_avg_sq;
  static Moments zeros_like(const at::Tensor& param);
};

/// One Adam (L2) or AdamW (decoupled) step, in place on fp32 `param`;
/// `step` counts from 1. FusedAdam's formulas:
///   L2:        g += wd p; m, v; p -= lr (m / bc1) / (sqrt(v / bc2) + eps)
///   decoupled: m, v;      p -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)
void adam_step(at::Tensor& param, const at::Tensor& grad, Moments& moments, int64_t step,
               const StepHyperParams& h);

/// Partial squared L2 norms of one segment, summed in fp64.
struct LambPartialNorms {
  double param_sq = 0.0;
  double update_sq = 0.0;
};

/// LAMB stage 1 on one segment: updates m and v and writes
/// u = m / (sqrt(v) + eps) + wd p (uncorrected moments; sqrt(v + eps) with
/// eps_inside_sqrt) into `update`. See Note [LAMB on shards needs whole-parameter norms].
LambPartialNorms lamb_prepare(const at::Tensor& param, const at::Tensor& grad, Moments& moments,
                              at::Tensor& update, const StepHyperParams& h);

/// The trust ratio from whole-parameter norms: ||p|| / ||u|| clamped to
/// [min_coeff, max_coeff], 1 when either norm is 0.
double lamb_trust_ratio(double param_norm, double update_norm, const LambOptions& o);

/// LAMB stage 2: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * trust * u (lr alone
/// without bias correction).
void lamb_apply(at::Tensor& param, const at::Tensor& update, double trust_ratio, int64_t step,
                const StepHyperParams& h);

}  // namespace zerotrain::optim
