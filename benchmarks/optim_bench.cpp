// optim_bench: the fused optimizer step against the memory roofline and
// against what LibTorch offers, every baseline measured in the same run.
//
// CPU (default): for 16M and 128M fp32 parameters at 1 and 2 threads,
//   - "roofline": an in-place read-4/write-3 kernel (Adam's access pattern:
//     reads p, g, m, v; writes p, m, v), compiled for AVX2 and AVX-512 here,
//     the faster of the two counts;
//   - LibTorch's torch::optim::AdamW and ATen's fused CPU AdamW (_fused_adamw_);
//   - zerotrain's fused AdamW, fp32, and its bf16 variant (bf16 gradients in,
//     fp32 master/m/v, bf16 parameters out: 28 bytes per parameter as well).
// Each row prints params/s, effective GB/s (28 B per parameter) and ratios.
//
// CUDA (--device cuda, on a GPU machine): 1B parameters over 200 tensors,
//   - fp32 AdamW against at::_fused_adamw_ (torch.optim.AdamW(fused=True)'s
//     kernel) and against a device-to-device copy;
//   - the mixed-precision step (bf16 grads: overflow check, unscale, fp32
//     master update, bf16 params out) against the PyTorch sequence
//     (grads to fp32, _amp_foreach_non_finite_check_and_unscale_,
//     _fused_adamw_, master copied to bf16);
//   - LAMB against the same formula in torch ops, and against the copy.
//
//   build/benchmarks/optim_bench [--sizes 16,128] [--threads 1,2] [--steps 10]
//   build/benchmarks/optim_bench --device cuda [--params 1000000000] [--tensors 200]

#include "optim/cpu/cpu_optim.h"
#include "optim/fused_optimizer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#if defined(ZEROTRAIN_WITH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using zerotrain::optim::AdamTensors;
using zerotrain::optim::StepControl;
using zerotrain::optim::StepHyperParams;

struct Args {
  std::vector<int64_t> sizes_m = {16, 128};
  std::vector<int> threads = {1, 2};
  int steps = 10;
  std::string device = "cpu";
  int64_t params = 1'000'000'000;
  int64_t tensors = 200;
};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--sizes") a.sizes_m = parse_list(v);
    else if (k == "--threads") {
      a.threads.clear();
      for (int64_t t : parse_list(v)) a.threads.push_back(static_cast<int>(t));
    } else if (k == "--steps") a.steps = std::stoi(v);
    else if (k == "--device") a.device = v;
    else if (k == "--params") a.params = std::stoll(v);
    else if (k == "--tensors") a.tensors = std::stoll(v);
    else throw std::invalid_argument("optim_bench: unknown option " + k);
  }
  return a;
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// The roofline kernel: Adam's access pattern with the least arithmetic.
#if defined(__x86_64__)
#define ZT_BW_KERNEL(name, isa)                                                               \
  __attribute__((target(isa))) void name(float* __restrict__ p, const float* __restrict__ g, \
                                            float* __restrict__ m, float* __restrict__ v,      \
                                            int64_t b, int64_t e) {                            \
    _Pragma("omp simd") for (int64_t i = b; i < e; ++i) {                                      \
      const float gi = g[i];                                                                   \
      p[i] += 1e-7f * gi;                                                                      \
      m[i] += 0.1f * gi;                                                                       \
      v[i] += 0.001f * gi;                                                                     \
    }                                                                                          \
  }
ZT_BW_KERNEL(rmw4r3w_avx2, "avx2,fma")
ZT_BW_KERNEL(rmw4r3w_avx512, "avx512f,avx512vl,avx512bw,fma")
#endif

void print_row(const char* method, int64_t n, int threads, double seconds, double bytes_per_param,
               const std::string& ratios) {
  const double pps = static_cast<double>(n) / seconds;
  std::printf("| %-34s | %4lldM | %d | %8.2f | %9.3e | %6.1f | %s |\n", method,
              static_cast<long long>(n >> 20), threads, seconds * 1e3, pps, pps * bytes_per_param / 1e9,
              ratios.c_str());
  std::fflush(stdout);
}

std::string fmt(const char* label, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.2fx", label, x);
  return buf;
}

// Times every method once per round, for `rounds` rounds, and returns each
// method's median: interleaving keeps a shared machine's drifting bandwidth
// out of the ratios.
std::vector<double> time_interleaved(int rounds, const std::vector<std::function<void()>>& methods) {
  for (const auto& f : methods) f();  // warm-up: first-touch, state allocation
  std::vector<std::vector<double>> t(methods.size());
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < methods.size(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      methods[i]();
      t[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  std::vector<double> med;
  for (auto& x : t) med.push_back(median(x));
  return med;
}

void run_cpu(const Args& a) {
  const auto& sel = zerotrain::optim::cpu::selected_isa();
  std::printf("zerotrain CPU kernels: %s (%s", zerotrain::optim::cpu::isa_name(sel.isa), sel.reason.c_str());
  for (const auto& t : sel.timings)
    std::printf("; %s %.2f ms", zerotrain::optim::cpu::isa_name(t.isa), t.seconds * 1e3);
  std::printf(")\n\n");
  std::printf("| method | size | threads | step ms | params/s | eff. GB/s | ratios |\n|---|---|---|---|---|---|---|\n");
  StepHyperParams h;
  h.lr = 1e-3;
  h.weight_decay = 0.01;
  for (int64_t size_m : a.sizes_m) {
    const int64_t n = size_m << 20;
    const at::Tensor p_init = at::randn({n}), g = at::randn({n}) * 1e-2;
    const at::Tensor g16 = g.to(at::kBFloat16);
    for (int threads : a.threads) {
      at::set_num_threads(threads);
      // Every method updates its own parameters and moments, allocated here in
      // the same way, so no method runs on buffers the others have touched or
      // placed differently; all read the same gradient.
      struct State {
        at::Tensor p, m, v;
      };
      const auto fresh = [&] { return State{p_init.clone(), at::zeros({n}), at::zeros({n})}; };
      State roof_state = fresh(), aten_state = fresh(), ours_state = fresh(), ours16_state = fresh();
      at::Tensor& p = roof_state.p;
      at::Tensor& m = roof_state.m;
      at::Tensor& v = roof_state.v;
      std::vector<std::function<void()>> methods;
      // 0, 1: the roofline kernel for AVX2 and AVX-512; the faster counts.
#if defined(__x86_64__)
      for (auto* kernel : {&rmw4r3w_avx2, &rmw4r3w_avx512}) {
        const bool ok = kernel == &rmw4r3w_avx2 || __builtin_cpu_supports("avx512f");
        methods.push_back([&, kernel, ok] {
          if (!ok) return;
          at::parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
            kernel(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), b, e);
          });
        });
      }
#else
      methods.push_back([] {});
      methods.push_back([] {});
#endif
      // 2: LibTorch's C++ AdamW on the same values.
      at::Tensor lp = p_init.clone().set_requires_grad(true);
      lp.mutable_grad() = g;
      torch::optim::AdamW lt({lp}, torch::optim::AdamWOptions(h.lr).weight_decay(h.weight_decay));
      methods.push_back([&] { lt.step(); });
      // 3: ATen's fused CPU AdamW (torch.optim.AdamW(fused=True) on CPU).
      at::Tensor fp = aten_state.p, fm = aten_state.m, fv = aten_state.v, step = at::zeros({}, at::kFloat);
      methods.push_back([&] {
        step.add_(1);
        at::_fused_adamw_({fp}, {g}, {fm}, {fv}, {}, {step}, h.lr, h.beta1, h.beta2, h.weight_decay, h.eps,
                          false, false);
      });
      // 4, 5: ours, fp32; and bf16 gradients in, bf16 parameters out.
      const StepControl c = StepControl::make(at::kCPU, 1.0);
      const at::Tensor p16 = p_init.to(at::kBFloat16);
      AdamTensors t{{ours_state.p}, {g}, {ours_state.m}, {ours_state.v}, {}};
      AdamTensors t16{{ours16_state.p}, {g16}, {ours16_state.m}, {ours16_state.v}, {p16}};
      int64_t k = 0;
      methods.push_back([&] { zerotrain::optim::fused_adam(t, h, ++k, c); });
      methods.push_back([&] { zerotrain::optim::fused_adam(t16, h, ++k, c); });
      const std::vector<double> s = time_interleaved(a.steps, methods);
#if defined(__x86_64__)
      const double roof = __builtin_cpu_supports("avx512f") ? std::min(s[0], s[1]) : s[0];
#else
      const double roof = 0.0;  // no roofline kernel off x86
#endif
      print_row("roofline: in-place read 4 / write 3", n, threads, roof, 28, "1.00x of roofline");
      print_row("torch::optim::AdamW (LibTorch)", n, threads, s[2], 28, fmt("roofline", roof / s[2]));
      print_row("ATen _fused_adamw_ (fused=True)", n, threads, s[3], 28, fmt("roofline", roof / s[3]));
      for (int i : {4, 5}) {
        print_row(i == 4 ? "zerotrain fused AdamW, fp32" : "zerotrain fused AdamW, bf16 g/p", n, threads, s[i], 28,
                  fmt("roofline", roof / s[i]) + ", " + fmt("LibTorch", s[2] / s[i]) + ", " +
                      fmt("ATen fused", s[3] / s[i]));
      }
    }
  }
}

#if defined(ZEROTRAIN_WITH_CUDA)
double time_cuda(int steps, const std::function<void()>& f) {
  f();
  f();
  c10::cuda::device_synchronize();
  std::vector<double> t;
  for (int i = 0; i < steps; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    f();
    stop.record();
    stop.synchronize();
    t.push_back(start.elapsed_time(stop) / 1e3);
  }
  return median(t);
}

void run_cuda(const Args& a) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA);
  const int64_t per = a.params / a.tensors;
  std::vector<at::Tensor> p, g, m, v, g16, p16;
  for (int64_t i = 0; i < a.tensors; ++i) {
    const int64_t n = per + (i % 7) * 1031;  // mixed sizes
    p.push_back(at::randn({n}, f32));
    g.push_back(at::randn({n}, f32) * 1e-2);
    m.push_back(at::zeros({n}, f32));
    v.push_back(at::zeros({n}, f32));
    g16.push_back(g.back().to(at::kBFloat16));
    p16.push_back(p.back().to(at::kBFloat16));
  }
  int64_t total = 0;
  for (const auto& t : p) total += t.numel();
  StepHyperParams h;
  h.lr = 1e-3;
  h.weight_decay = 0.01;
  std::printf("| method | params | ms | eff. GB/s | ratios |\n|---|---|---|---|---|\n");
  auto row = [&](const char* name, double s, double bytes, const std::string& r) {
    std::printf("| %-44s | %lld | %8.3f | %7.1f | %s |\n", name, static_cast<long long>(total), s * 1e3,
                total * bytes / s / 1e9, r.c_str());
    std::fflush(stdout);
  };
  // Copy: 14 bytes per parameter read and 14 written, the traffic of one fp32 Adam step.
  at::Tensor src = at::empty({total * 14}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
  at::Tensor dst = at::empty_like(src);
  const double t_copy = time_cuda(a.steps, [&] { dst.copy_(src); });
  row("device-to-device copy of 28 B/param traffic", t_copy, 28, "1.00x of copy");
  src = dst = at::Tensor();
  const StepControl c = StepControl::make(at::Device(at::kCUDA), 1.0);
  int64_t k = 0;
  AdamTensors t{p, g, m, v, {}};
  const double t_ours = time_cuda(a.steps, [&] { zerotrain::optim::fused_adam(t, h, ++k, c); });
  std::vector<at::Tensor> steps;
  for (int64_t i = 0; i < a.tensors; ++i) steps.push_back(at::zeros({}, f32));
  const double t_torch = time_cuda(a.steps, [&] {
    at::_foreach_add_(steps, 1.0);
    at::_fused_adamw_(p, g, m, v, {}, steps, h.lr, h.beta1, h.beta2, h.weight_decay, h.eps, false, false);
  });
  row("at::_fused_adamw_ fp32 (fused=True)", t_torch, 28, fmt("copy", t_copy / t_torch));
  row("zerotrain fused AdamW fp32", t_ours, 28,
      fmt("copy", t_copy / t_ours) + ", " + fmt("torch fused", t_torch / t_ours));
  // Mixed precision: bf16 grads in, overflow check + unscale, fp32 master, bf16 params out.
  const StepControl c16 = StepControl::make(at::Device(at::kCUDA), 1.0 / 1024);
  const double t_mixed = time_cuda(a.steps, [&] {
    c16.overflow.zero_();
    zerotrain::optim::multi_tensor_sum_squares(g16, c16.overflow);
    zerotrain::optim::fused_adam({p, g16, m, v, p16}, h, ++k, c16);
  });
  at::Tensor found_inf = at::zeros({1}, f32), inv = at::full({1}, 1.0 / 1024, f32);
  const double t_seq = time_cuda(a.steps, [&] {
    // AMP unscales fp32 gradients (it has no bf16 kernel): convert first.
    found_inf.zero_();
    std::vector<at::Tensor> g32;
    for (const auto& x : g16) g32.push_back(x.to(at::kFloat));
    at::_amp_foreach_non_finite_check_and_unscale_(g32, found_inf, inv);
    at::_foreach_add_(steps, 1.0);
    at::_fused_adamw_(p, g32, m, v, {}, steps, h.lr, h.beta1, h.beta2, h.weight_decay, h.eps, false, false,
                      {}, found_inf);
    at::_foreach_copy_(p16, p);
  });
  row("PyTorch sequence: to fp32, unscale, fused AdamW, copy", t_seq, 28, fmt("copy", t_copy / t_seq));
  row("zerotrain mixed step (check + fused AdamW)", t_mixed, 28,
      fmt("copy", t_copy / t_mixed) + ", " + fmt("PyTorch sequence", t_seq / t_mixed));
  // LAMB: ours in two stages against the same formula in torch ops.
  std::vector<at::Tensor> u;
  for (const auto& x : p) u.push_back(at::empty_like(x));
  zerotrain::optim::LambTensors lt{p, g, m, v, u, {}};
  const double t_lamb = time_cuda(a.steps, [&] {
    const at::Tensor norms = zerotrain::optim::fused_lamb_prepare(lt, h, c);
    zerotrain::optim::fused_lamb_apply(lt, norms, h, ++k, c);
  });
  const double t_lamb_ref = time_cuda(a.steps, [&] {
    for (size_t i = 0; i < p.size(); ++i) {
      m[i].mul_(h.beta1).add_(g[i], 1 - h.beta1);
      v[i].mul_(h.beta2).addcmul_(g[i], g[i], 1 - h.beta2);
      at::Tensor upd = m[i] / (v[i].sqrt() + h.eps) + h.weight_decay * p[i];
      const at::Tensor trust = (p[i].norm() / upd.norm()).nan_to_num(1.0).clamp(0.01, 10.0);
      p[i].sub_(upd * trust * h.lr);
    }
  });
  row("LAMB in torch ops", t_lamb_ref, 40, fmt("copy", t_copy / t_lamb_ref));
  row("zerotrain fused LAMB (2 stages, 40 B/param)", t_lamb, 40,
      fmt("torch ops", t_lamb_ref / t_lamb));
}
#endif

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    if (a.device == "cpu") {
      run_cpu(a);
    } else if (a.device == "cuda") {
#if defined(ZEROTRAIN_WITH_CUDA)
      run_cuda(a);
#else
      std::fprintf(stderr, "optim_bench: built without CUDA\n");
      return 2;
#endif
    } else {
      throw std::invalid_argument("optim_bench: --device must be cpu or cuda");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
