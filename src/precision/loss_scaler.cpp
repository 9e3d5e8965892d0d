// See Note [DeepSpeed's dynamic loss-scale rule] in loss_scaler.h.

#include "precision/loss_scaler.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <sstream>

namespace zerotrain::precision {

namespace {
std::string scale_text(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}
}  // namespace

LossScaler::LossScaler(Fp16Config config, bool dynamic, double scale)
    : config_(std::move(config)), dynamic_(dynamic) {
  state_.scale = scale;
  state_.hysteresis_left = config_.hysteresis;
}

LossScaler LossScaler::from_config(const Fp16Config& fp16) {
  if (!fp16.enabled) return LossScaler(fp16, false, 1.0);
  if (!fp16.dynamic_loss_scale()) return LossScaler(fp16, false, fp16.loss_scale);
  return LossScaler(fp16, true, std::ldexp(1.0, static_cast<int>(fp16.initial_scale_power)));
}

LossScaleUpdate LossScaler::update(bool overflow, int64_t step) {
  LossScaleUpdate u;
  u.skip_step = overflow;
  u.previous_scale = state_.scale;
  if (!dynamic_) {
    if (overflow) {
      u.message = "OVERFLOW! step " + std::to_string(step) + ": skipping; static loss scale " +
                  scale_text(state_.scale);
    }
    u.scale = state_.scale;
    return u;
  }
  const double min_scale = config_.min_loss_scale;
  if (overflow) {
    if (config_.hysteresis == 1 || state_.hysteresis_left == 1) {
      if (state_.scale <= min_scale) {
        TORCH_CHECK(config_.min_loss_scale_action == MinLossScaleAction::kSkip,
                    "zerotrain: fp16 step ", step, " overflowed with the loss scale already at its "
                    "minimum (", scale_text(state_.scale), " = fp16.min_loss_scale): the run "
                    "cannot continue, as in DeepSpeed. Lower fp16.min_loss_scale, or set "
                    "fp16.min_loss_scale_action to \"skip\" to keep skipping such steps");
        u.message = "WARNING: OVERFLOW! step " + std::to_string(step) +
                    ": skipping; the loss scale is already at its minimum " +
                    scale_text(state_.scale) + " (fp16.min_loss_scale_action = \"skip\")";
      } else {
        state_.scale = std::max(state_.scale / 2.0, min_scale);
        u.message = "OVERFLOW! step " + std::to_string(step) + ": skipping; loss scale " +
                    scale_text(u.previous_scale) + " -> " + scale_text(state_.scale);
      }
    } else {
      state_.hysteresis_left -= 1;
      u.message = "OVERFLOW! step " + std::to_string(step) + ": skipping; loss scale stays " +
                  scale_text(state_.scale) + " (hysteresis left " +
                  std::to_string(state_.hysteresis_left) + ")";
    }
    state_.last_overflow_iteration = state_.iteration;
  } else {
    if (config_.consecutive_hysteresis) state_.hysteresis_left = config_.hysteresis;
    const int64_t stable = state_.iteration - state_.last_overflow_iteration - 1;
    if (stable > 0 && stable % config_.loss_scale_window == 0) {
      state_.scale *= 2.0;
      if (!config_.consecutive_hysteresis) state_.hysteresis_left = config_.hysteresis;
    }
  }
  state_.iteration += 1;
  u.scale = state_.scale;
  return u;
}

}  // namespace zerotrain::precision
