#pragma once
// The CPU optimizer step over raw fp32 buffers: picks the instruction set,
// splits each buffer across ATen's OpenMP threads, and honours the overflow
// flag. The kernels themselves are in cpu_kernels_impl.h; the at::Tensor glue
// that the engine calls is src/optim/fused_optimizer.h.
//
// Nothing here allocates per element: adam() and lamb_apply() touch only the
// caller's buffers; the reductions keep one fp64 partial per block of
// kReductionBlock elements.

#include "optim/cpu/cpu_kernels.h"

#include <cstdint>
#include <string>
#include <vector>

namespace zerotrain::optim::cpu {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);

/// The instruction sets this build and this CPU can run, narrowest first.
std::vector<Isa> supported_isas();

/// One timing of the selection measurement.
struct IsaTiming {
  Isa isa;
  double seconds;  // best of the repetitions, one Adam step over the probe buffers
};

/// How the instruction set was chosen, for logs and benchmarks.
struct IsaSelection {
  Isa isa;
  std::string reason;               // "ZEROTRAIN_CPU_ISA=avx2" or "measured"
  std::vector<IsaTiming> timings;   // empty when chosen by the environment
};

/// The instruction set the kernels use by default, chosen on first use and
/// then fixed for the process: ZEROTRAIN_CPU_ISA (scalar, avx2 or avx512) when
/// set, an error if this CPU cannot run it; otherwise the fastest by a short
/// measurement of the Adam step on buffers larger than the caches (the CPU
/// flags alone do not say which width is faster for a memory-bound step).
/// Every choice gives the same bits; see Note [Every CPU instruction set gives
/// the same bits].
const IsaSelection& selected_isa();

const KernelTable& kernel_table(Isa isa);

/// Elements per reduction block: partial norms are summed block by block in
/// order, so the result does not depend on the thread count.
constexpr int64_t kReductionBlock = int64_t{1} << 16;

void adam(const AdamArgs& a, int64_t numel, Isa isa);
SquaredNorms lamb_prepare(const LambPrepareArgs& a, int64_t numel, Isa isa);
void lamb_apply(const LambApplyArgs& a, int64_t numel, Isa isa);
double sum_squares(const void* x, DType dtype, int64_t numel, Isa isa);

}  // namespace zerotrain::optim::cpu
