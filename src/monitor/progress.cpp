// See progress.h.

#include "monitor/progress.h"

#include <zerotrain/estimate.h>  // format_bytes

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace zerotrain::monitor {
namespace {

std::string printf_string(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, std::round(seconds)));
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::string format_si(double v) {
  const double a = std::fabs(v);
  if (a >= 1e9) return printf_string(a >= 1e11 ? "%.0fG" : a >= 1e10 ? "%.1fG" : "%.2fG", v / 1e9);
  if (a >= 1e6) return printf_string(a >= 1e8 ? "%.0fM" : a >= 1e7 ? "%.1fM" : "%.2fM", v / 1e6);
  if (a >= 1e3) return printf_string(a >= 1e5 ? "%.0fk" : a >= 1e4 ? "%.1fk" : "%.2fk", v / 1e3);
  return printf_string("%.1f", v);
}

std::string format_report(const IntervalReport& r) {
  const auto bytes = [](int64_t b) { return b < 0 ? std::string("?") : format_bytes(b); };
  std::ostringstream s;
  s << "[zerotrain] step " << r.step;
  if (r.total_steps > 0) s << "/" << r.total_steps;
  s << " | loss " << printf_string("%.4f", r.loss) << " | lr";
  for (double lr : r.lr) s << " " << printf_string("%.3e", lr);
  if (r.loss_scale) s << " | loss scale " << printf_string("%g", *r.loss_scale);
  if (r.grad_norm)
    s << " | grad norm " << (*r.grad_norm < 0 ? std::string("inf/nan") : printf_string("%.4g", *r.grad_norm));
  s << " | skipped " << r.skipped << " | " << format_si(r.samples_per_sec) << " samples/s";
  if (r.tokens_per_sec > 0) s << " | " << format_si(r.tokens_per_sec) << " tokens/s";
  if (r.tflops_per_device > 0) {
    s << " | " << printf_string(r.tflops_per_device >= 10 ? "%.1f" : "%.3g", r.tflops_per_device)
      << " TFLOPs";
    if (r.mfu > 0) s << " (MFU " << printf_string("%.1f", 100 * r.mfu) << "%)";
  }
  if (!r.peak_memory.empty()) {
    s << " | " << r.memory_kind;
    if (r.peak_memory.size() <= 8) {
      for (size_t i = 0; i < r.peak_memory.size(); ++i)
        s << (i ? ", " : " ") << "r" << i << " " << bytes(r.peak_memory[i]);
    } else {
      const auto hi = std::max_element(r.peak_memory.begin(), r.peak_memory.end());
      const auto lo = std::min_element(r.peak_memory.begin(), r.peak_memory.end());
      s << " max " << bytes(*hi) << " (r" << (hi - r.peak_memory.begin()) << "), min " << bytes(*lo) << " (r"
        << (lo - r.peak_memory.begin()) << ")";
    }
  }
  return s.str();
}

std::string format_breakdown(const PhaseTimes& now, const PhaseTimes& before, int64_t steps) {
  std::ostringstream s;
  s << "[zerotrain] time per step (ms):";
  const double n = static_cast<double>(std::max<int64_t>(1, steps));
  bool first = true;
  for (int i = 0; i < kNumPhases; ++i) {
    const auto k = static_cast<size_t>(i);
    if (now.count[k] == before.count[k]) continue;
    const double ms = (now.total_ms[k] - before.total_ms[k]) / n;
    const auto phase = static_cast<Phase>(i);
    s << (first ? " " : " | ") << to_string(phase) << " " << printf_string("%.2f", ms);
    if (phase == Phase::kReduce) s << " (not hidden by backward)";
    first = false;
  }
  if (first) s << " nothing timed";
  return s.str();
}

std::string format_bar(const BarState& b, int width) {
  std::ostringstream s;
  s << "step " << b.step;
  if (b.total_steps > 0) {
    const double done =
        std::clamp(static_cast<double>(b.step) / static_cast<double>(b.total_steps), 0.0, 1.0);
    const int filled = static_cast<int>(std::floor(done * width));
    s << "/" << b.total_steps << " [" << std::string(static_cast<size_t>(filled), '#')
      << std::string(static_cast<size_t>(width - filled), '-') << "] " << printf_string("%3.0f", 100 * done)
      << "%";
  }
  if (b.loss) s << " | loss " << printf_string("%.4f", *b.loss);
  if (b.rate > 0) s << " | " << format_si(b.rate) << (b.tokens ? " tok/s" : " samples/s");
  s << " | " << format_duration(b.elapsed_s) << "<"
    << (b.eta_s ? format_duration(*b.eta_s) : std::string("?"));
  return s.str();
}

}  // namespace zerotrain::monitor
