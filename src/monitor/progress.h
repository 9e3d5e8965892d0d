#pragma once
// Text of the progress reports: the steps_per_print line, the
// wall_clock_breakdown split and the progress bar. Pure functions, so the
// tests check the exact text.

#include <zerotrain/engine.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zerotrain::monitor {

/// One steps_per_print interval, as the rank-0 line shows it.
struct IntervalReport {
  int64_t step = 0;
  int64_t total_steps = 0;           // 0: unknown
  double loss = 0;                   // mean over the interval's steps and every rank
  std::vector<double> lr;            // per parameter group
  std::optional<double> loss_scale;  // fp16 only
  std::optional<double> grad_norm;   // the last step's; -1 for inf/nan
  int64_t skipped = 0;
  double samples_per_sec = 0;
  double tokens_per_sec = 0;         // 0: not a sequence model
  double tflops_per_device = 0;      // 0: FLOPs unknown
  double mfu = 0;                    // 0: the device's peak is unknown
  std::vector<int64_t> peak_memory;  // per rank; -1 unknown
  std::string memory_kind;           // "peak RSS", "peak allocated"
};

std::string format_report(const IntervalReport& r);
/// Average ms per step of each phase between two cumulative snapshots.
std::string format_breakdown(const PhaseTimes& now, const PhaseTimes& before, int64_t steps);

struct BarState {
  int64_t step = 0;
  int64_t total_steps = 0;
  std::optional<double> loss;  // this step's (rank 0)
  double rate = 0;             // tokens/s, or samples/s when `tokens` is false
  bool tokens = false;
  double elapsed_s = 0;
  std::optional<double> eta_s;
};
/// One line without a newline, e.g.
/// "step 120/600 [######------------------]  20% | loss 2.3141 | 54.4k tok/s | 0:42<2:48".
std::string format_bar(const BarState& b, int width = 24);

/// 59 -> "0:59", 3725 -> "1:02:05".
std::string format_duration(double seconds);
/// 54400 -> "54.4k", 1.2e6 -> "1.20M", 12 -> "12.0".
std::string format_si(double v);

}  // namespace zerotrain::monitor
