#include "optim/cpu/cpu_optim.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace zerotrain::optim::cpu {

namespace {

constexpr int64_t kGrain = int64_t{1} << 15;  // elements per thread at least

bool cpu_can_run(Isa isa) {
#if defined(ZEROTRAIN_CPU_X86_KERNELS)
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return isa == Isa::kScalar;
#endif
}

IsaSelection measure_isas() {
  // 4 Mi elements: p, g, m, v are 64 MiB together, beyond the last-level cache.
  constexpr int64_t kProbe = int64_t{4} << 20;
  constexpr int kRepeats = 3;
  std::unique_ptr<float[]> buf(new float[4 * kProbe]);
  for (int64_t i = 0; i < 4 * kProbe; ++i) buf[i] = 1e-3f * static_cast<float>(i % 1000) + 0.5f;
  AdamArgs a{};
  a.param = buf.get();
  a.grad = buf.get() + kProbe;
  a.grad_dtype = DType::kFloat32;
  a.exp_avg = buf.get() + 2 * kProbe;
  a.exp_avg_sq = buf.get() + 3 * kProbe;
  a.inv_scale = 1.0f;
  a.scalars = {0.9f, 0.999f, 0.1f, 0.001f, 1e-8f, 1e-6f, 1.0f, 0.0f, 1e-8f};
  IsaSelection sel{Isa::kScalar, "measured", {}};
  const std::vector<Isa> isas = supported_isas();
  for (Isa isa : isas) sel.timings.push_back({isa, 1e30});
  // Interleaved, best of kRepeats: a shared machine's bandwidth drifts over time.
  for (int r = 0; r < kRepeats; ++r) {
    for (IsaTiming& t : sel.timings) {
      const auto start = std::chrono::steady_clock::now();
      adam(a, kProbe, t.isa);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      t.seconds = std::min(t.seconds, s);
    }
  }
  const auto best = std::min_element(sel.timings.begin(), sel.timings.end(),
                                     [](const IsaTiming& x, const IsaTiming& y) { return x.seconds < y.seconds; });
  sel.isa = best->isa;
  return sel;
}

IsaSelection choose_isa() {
  const char* env = std::getenv("ZEROTRAIN_CPU_ISA");
  if (env != nullptr && *env != '\0') {
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (std::strcmp(env, isa_name(isa)) == 0) {
        TORCH_CHECK(cpu_can_run(isa), "ZEROTRAIN_CPU_ISA=", env,
                    ": this CPU or build cannot run it; supported here: ",
                    [] {
                      std::string s;
                      for (Isa i : supported_isas()) s += std::string(s.empty() ? "" : ", ") + isa_name(i);
                      return s;
                    }());
        return {isa, std::string("ZEROTRAIN_CPU_ISA=") + env, {}};
      }
    }
    TORCH_CHECK(false, "ZEROTRAIN_CPU_ISA=", env, " is not one of scalar, avx2, avx512");
  }
  return measure_isas();
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (cpu_can_run(isa)) out.push_back(isa);
  return out;
}

const IsaSelection& selected_isa() {
  static const IsaSelection selection = choose_isa();
  return selection;
}

const KernelTable& kernel_table(Isa isa) {
  TORCH_CHECK(cpu_can_run(isa), "zerotrain CPU optimizer: instruction set ", isa_name(isa),
              " is not available on this CPU or build");
  switch (isa) {
    case Isa::kScalar: return scalar::kTable;
#if defined(ZEROTRAIN_CPU_X86_KERNELS)
    case Isa::kAvx2: return avx2::kTable;
    case Isa::kAvx512: return avx512::kTable;
#else
    default: break;
#endif
  }
  TORCH_INTERNAL_ASSERT(false, "unreachable instruction set");
}

void adam(const AdamArgs& a, int64_t numel, Isa isa) {
  const KernelTable& t = kernel_table(isa);
  at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) { t.adam(a, begin, end); });
}

void lamb_apply(const LambApplyArgs& a, int64_t numel, Isa isa) {
  const KernelTable& t = kernel_table(isa);
  at::parallel_for(0, numel, kGrain,
                   [&](int64_t begin, int64_t end) { t.lamb_apply(a, begin, end); });
}

namespace {
// Runs `block(begin, end)` over fixed blocks in parallel and sums the partials
// in block order.
template <class Partial, class Fn>
Partial reduce_blocks(int64_t numel, Fn block) {
  const int64_t blocks = (numel + kReductionBlock - 1) / kReductionBlock;
  if (blocks <= 1) return numel > 0 ? block(0, numel) : Partial{};
  std::vector<Partial> partial(static_cast<size_t>(blocks));
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      partial[static_cast<size_t>(b)] =
          block(b * kReductionBlock, std::min(numel, (b + 1) * kReductionBlock));
  });
  Partial total{};
  for (const Partial& p : partial) total += p;
  return total;
}
}  // namespace

SquaredNorms lamb_prepare(const LambPrepareArgs& a, int64_t numel, Isa isa) {
  const KernelTable& t = kernel_table(isa);
  return reduce_blocks<SquaredNorms>(
      numel, [&](int64_t begin, int64_t end) { return t.lamb_prepare(a, begin, end); });
}

double sum_squares(const void* x, DType dtype, int64_t numel, Isa isa) {
  const KernelTable& t = kernel_table(isa);
  return reduce_blocks<double>(
      numel, [&](int64_t begin, int64_t end) { return t.sum_squares(x, dtype, begin, end); });
}

}  // namespace zerotrain::optim::cpu
