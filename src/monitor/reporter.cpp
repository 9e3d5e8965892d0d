// See reporter.h.

#include "monitor/reporter.h"

#include "comm/gather_values.h"
#include "monitor/progress.h"
#include "monitor/resources.h"

#include <ATen/ops/add.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

namespace zerotrain::monitor {

Reporter::Reporter(const LoggingConfig& logging, const ProgressOptions& progress, const RunFacts& facts)
    : logging_(logging), progress_(progress), facts_(facts), monitors_(logging, facts.rank) {
  const bool terminal = isatty(STDOUT_FILENO) == 1;
  TORCH_CHECK(!(progress.sink && progress.bar == ProgressBar::kOn),
              "zerotrain: ProgressOptions::bar is kOn and a sink is set; the bar is drawn on standard output only");
  bar_ = facts.rank == 0 && progress.total_steps > 0 && !progress.sink &&
         (progress.bar == ProgressBar::kOn || (progress.bar == ProgressBar::kAuto && terminal));
  flops_per_sample_ = progress.flops_per_sample > 0 ? progress.flops_per_sample
                                                    : 6.0 * static_cast<double>(facts.trainable_params) *
                                                          static_cast<double>(progress.tokens_per_sample);
  peak_flops_ = progress.peak_flops_per_device > 0 ? progress.peak_flops_per_device
                                                   : peak_flops(device_name(facts.device), facts.dtype);
  restart();
  if (facts.rank == 0 && monitors_.enabled()) print_line("[zerotrain] monitors: " + monitors_.describe());
}

Reporter::~Reporter() {
  if (bar_drawn_) std::fputs("\n", stdout), std::fflush(stdout);
}

void Reporter::restart() {
  run_start_ = last_step_time_ = last_print_time_ = last_draw_ = Clock::now();
  last_print_step_ = -1;
  steps_this_run_ = 0;
  ema_step_s_.reset();
  interval_loss_ = at::Tensor();
  window_loss_ = at::Tensor();
}

void Reporter::add_loss(const at::Tensor& loss) {
  const at::Tensor l = loss.detach().to(at::kFloat);
  window_loss_ = window_loss_.defined() ? at::add(window_loss_, l) : l.clone();
}

bool Reporter::is_print_step(int64_t step) const {
  const auto& every = logging_.steps_per_print;
  return every && *every > 0 && step % *every == 0;
}

bool Reporter::shows_counts(int64_t step) const {
  return is_print_step(step) || (facts_.rank == 0 && (bar_ || monitors_.enabled()));
}

void Reporter::print_line(const std::string& line) {
  if (facts_.rank != 0) return;
  if (progress_.sink) {
    progress_.sink(line);
    return;
  }
  if (bar_drawn_) std::fputs("\r\033[K", stdout);
  std::fputs(line.c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  bar_drawn_ = false;
}

void Reporter::after_step(const StepFacts& step, Communicator& comm) {
  const Clock::time_point now = Clock::now();
  const double step_s = std::chrono::duration<double>(now - last_step_time_).count();
  last_step_time_ = now;
  if (last_print_step_ < 0) {
    last_print_step_ = step.step - 1;
    times_at_print_ = times_at_step_;
  }
  ++steps_this_run_;
  // The first step of a run includes start-up; the ETA leaves it out.
  if (steps_this_run_ > 1) ema_step_s_ = ema_step_s_ ? 0.9 * *ema_step_s_ + 0.1 * step_s : step_s;

  const at::Tensor window = window_loss_.defined() ? window_loss_ : at::zeros({}, at::kFloat);
  window_loss_ = at::Tensor();
  interval_loss_ = interval_loss_.defined() ? at::add(interval_loss_, window) : window.clone();

  // Rank 0 reads this step's loss only when something shows it per step.
  std::optional<double> loss;
  if (facts_.rank == 0 && (bar_ || monitors_.enabled())) loss = window.item<double>();

  if (!step.overflow_message.empty()) print_line("[zerotrain] " + step.overflow_message);
  if (facts_.rank == 0 && monitors_.enabled()) monitors_.write(step_events(step, loss, step_s));
  if (is_print_step(step.step)) print_interval(step, comm, now);
  times_at_step_ = step.times;
  if (bar_) draw_bar(step, loss, now);
}

void Reporter::print_interval(const StepFacts& step, Communicator& comm, Clock::time_point now) {
  const int64_t steps = step.step - last_print_step_;
  const double seconds = std::chrono::duration<double>(now - last_print_time_).count();
  const double mean_loss = interval_loss_.item<double>() / static_cast<double>(std::max<int64_t>(1, steps));
  const std::vector<double> all = comm_detail::all_gather_values(
      comm, facts_.device,
      std::vector<double>{mean_loss, static_cast<double>(peak_memory_bytes(facts_.device))});

  IntervalReport r;
  r.step = step.step;
  r.total_steps = progress_.total_steps;
  for (int i = 0; i < facts_.world_size; ++i) {
    r.loss += all[2 * static_cast<size_t>(i)] / facts_.world_size;
    r.peak_memory.push_back(static_cast<int64_t>(all[2 * static_cast<size_t>(i) + 1]));
  }
  r.memory_kind = peak_memory_kind(facts_.device);
  r.lr = step.lr;
  if (facts_.report_loss_scale) r.loss_scale = step.loss_scale;
  if (step.grad_norm.defined()) r.grad_norm = step.grad_norm.read();
  r.skipped = step.skipped;
  r.samples_per_sec = seconds > 0 ? static_cast<double>(steps * facts_.train_batch_size) / seconds : 0;
  r.tokens_per_sec = r.samples_per_sec * static_cast<double>(progress_.tokens_per_sample);
  r.tflops_per_device = flops_per_sample_ * r.samples_per_sec / facts_.world_size / 1e12;
  if (peak_flops_ > 0) r.mfu = r.tflops_per_device * 1e12 / peak_flops_;
  print_line(format_report(r));
  if (logging_.wall_clock_breakdown) print_line(format_breakdown(step.times, times_at_print_, steps));

  last_print_step_ = step.step;
  last_print_time_ = now;
  times_at_print_ = step.times;
  interval_loss_ = at::Tensor();
}

std::vector<MonitorEvent> Reporter::step_events(const StepFacts& step, std::optional<double> loss,
                                                double step_s) const {
  const int64_t samples = step.step * facts_.train_batch_size;  // DeepSpeed's x axis
  std::vector<MonitorEvent> e;
  if (loss) e.push_back({"Train/Samples/train_loss", *loss, samples});
  if (!step.lr.empty()) e.push_back({"Train/Samples/lr", step.lr.front(), samples});
  if (facts_.report_loss_scale) e.push_back({"Train/Samples/loss_scale", step.loss_scale, samples});
  if (step.grad_norm.defined()) e.push_back({"Train/Samples/grad_norm", step.grad_norm.read(), samples});
  if (steps_this_run_ > 1 && step_s > 0) {  // the first step's time includes start-up
    const double rate = static_cast<double>(facts_.train_batch_size) / step_s;
    e.push_back({"Train/Samples/samples_per_sec", rate, samples});
    if (progress_.tokens_per_sample > 0)
      e.push_back(
          {"Train/Samples/tokens_per_sec", rate * static_cast<double>(progress_.tokens_per_sample), samples});
  }
  if (logging_.wall_clock_breakdown) {
    static const char* names[kNumPhases] = {"forward", "backward", "backward_allreduce", "step", "allgather"};
    for (int i = 0; i < kNumPhases; ++i) {
      const auto k = static_cast<size_t>(i);
      if (step.times.count[k] == times_at_step_.count[k]) continue;
      e.push_back({std::string("Train/Samples/elapsed_time_ms_") + names[k],
                   step.times.total_ms[k] - times_at_step_.total_ms[k], samples});
    }
  }
  return e;
}

void Reporter::draw_bar(const StepFacts& step, std::optional<double> loss, Clock::time_point now) {
  const bool last = step.step >= progress_.total_steps;
  if (bar_drawn_ && !last && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  BarState b;
  b.step = step.step;
  b.total_steps = progress_.total_steps;
  b.loss = loss;
  b.tokens = progress_.tokens_per_sample > 0;
  if (ema_step_s_ && *ema_step_s_ > 0) {
    const double samples = static_cast<double>(facts_.train_batch_size) / *ema_step_s_;
    b.rate = b.tokens ? samples * static_cast<double>(progress_.tokens_per_sample) : samples;
    b.eta_s = static_cast<double>(std::max<int64_t>(0, progress_.total_steps - step.step)) * *ema_step_s_;
  }
  b.elapsed_s = std::chrono::duration<double>(now - run_start_).count();
  std::fputs(("\r\033[K" + format_bar(b)).c_str(), stdout);
  if (last) {
    std::fputs("\n", stdout);
    bar_drawn_ = false;
  } else {
    bar_drawn_ = true;
  }
  std::fflush(stdout);
}

}  // namespace zerotrain::monitor
