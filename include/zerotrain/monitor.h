#pragma once
// What a run reports while it trains: the line every `steps_per_print` steps,
// the progress bar, and the `csv_monitor` / `tensorboard` event files. See
// docs/monitoring.md.

#include <cstdint>
#include <functional>
#include <string>

namespace zerotrain {

/// One scalar for the monitors. `x` is the horizontal axis; the engine's own
/// events use the global sample count, as DeepSpeed's do.
struct MonitorEvent {
  std::string name;  // e.g. "Train/Samples/train_loss"; '/' groups in TensorBoard
  double value = 0;
  int64_t x = 0;
};

enum class ProgressBar { kAuto, kOn, kOff };

/// Facts about the run that only the training program knows. Each is optional:
/// what is missing is left out of the reports.
struct ProgressOptions {
  /// Optimizer steps of the whole run (absolute, so a resumed run passes the
  /// same value). 0: unknown, so no bar and no ETA.
  int64_t total_steps = 0;
  /// Tokens in one sample (the sequence length), for tokens/s. 0: not a sequence model.
  int64_t tokens_per_sample = 0;
  /// Model FLOPs of one sample's forward and backward, for TFLOPs and MFU.
  /// 0: 6 x trainable parameters x tokens_per_sample (needs tokens_per_sample).
  double flops_per_sample = 0;
  /// The device's peak FLOP/s in the model's dtype, for MFU. 0: looked up
  /// from the GPU's name (none on CPU, so no MFU there).
  double peak_flops_per_device = 0;
  /// kAuto: a bar with ETA when stdout is a terminal and total_steps is known.
  ProgressBar bar = ProgressBar::kAuto;
  /// Where rank 0's report lines go (the steps_per_print line, the breakdown,
  /// overflow messages); empty: standard output. With a sink there is no bar
  /// under kAuto, and kOn is an error. The Python package logs them.
  std::function<void(const std::string&)> sink;
};

}  // namespace zerotrain
