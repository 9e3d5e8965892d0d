#pragma once
// fp16 loss scaling with DeepSpeed's rule (fp16/loss_scaler.py, DynamicLossScaler).
//
// Note [DeepSpeed's dynamic loss-scale rule]
// State: scale = 2^initial_scale_power, iteration it = 0, last overflow = -1,
// hysteresis budget h = hysteresis. Once per optimizer step, with `overflow`
// already combined across ranks:
//  * overflow and (hysteresis == 1 or h == 1): at the minimum scale, stop with
//    an error (DeepSpeed always does; fp16.min_loss_scale_action = "skip" keeps
//    skipping instead, loudly); otherwise scale = max(scale / 2, min_scale);
//  * overflow otherwise: h -= 1, the scale stays (the step is still skipped);
//  * both overflow cases: last overflow = it;
//  * no overflow: with consecutive_hysteresis, h = hysteresis first; then with
//    stable = it - last overflow - 1, if stable > 0 and stable % window == 0
//    the scale doubles (no upper cap) and, without consecutive_hysteresis,
//    h = hysteresis;
//  * always it += 1.
// An overflowing step is skipped whatever the scale does. A static scale
// (fp16.loss_scale > 0) never changes; bf16 and fp32 use a static scale of 1.

#include <zerotrain/config.h>

#include <cstdint>
#include <string>

namespace zerotrain::precision {

/// Everything needed to resume the scaler exactly (it goes into checkpoints).
struct LossScalerState {
  double scale = 1.0;
  int64_t iteration = 0;
  int64_t last_overflow_iteration = -1;
  int64_t hysteresis_left = 1;
  bool operator==(const LossScalerState& o) const {
    return scale == o.scale && iteration == o.iteration &&
           last_overflow_iteration == o.last_overflow_iteration &&
           hysteresis_left == o.hysteresis_left;
  }
};

/// What one update did, for the engine's log and counters.
struct LossScaleUpdate {
  bool skip_step = false;
  double previous_scale = 1.0;
  double scale = 1.0;
  /// A line for the log when something noteworthy happened, else empty:
  /// "OVERFLOW! step 12: skipping; loss scale 65536 -> 32768".
  std::string message;
};

class LossScaler {
 public:
  /// Dynamic or static from the fp16 section; `fp16.enabled == false` gives a
  /// static scale of 1 (bf16, fp32).
  static LossScaler from_config(const Fp16Config& fp16);

  double scale() const noexcept { return state_.scale; }
  bool is_dynamic() const noexcept { return dynamic_; }
  const LossScalerState& state() const noexcept { return state_; }
  void restore(const LossScalerState& state) { state_ = state; }

  /// Applies the rule for one optimizer step; `step` only labels messages.
  /// Throws c10::Error, naming the step and the scale, when the scale is
  /// already at its minimum and min_loss_scale_action is "raise".
  LossScaleUpdate update(bool overflow, int64_t step);

 private:
  LossScaler(Fp16Config config, bool dynamic, double scale);
  Fp16Config config_;
  bool dynamic_ = false;
  LossScalerState state_;
};

}  // namespace zerotrain::precision
